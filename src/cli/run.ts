import { runCli } from "./main.js";

/** CLI process entry. */
runCli(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code);
});
