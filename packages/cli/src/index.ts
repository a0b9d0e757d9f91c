export { main, COMMANDS } from "./main.js";
export { UserError, type Io } from "./util.js";
export { defineCommand, defineGroup, type Entry, type KilnCommand, type KilnGroup } from "./program.js";
