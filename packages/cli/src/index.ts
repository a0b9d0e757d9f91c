export { main, COMMANDS } from "./main.js";
export { UserError, type Command, type Io } from "./util.js";
