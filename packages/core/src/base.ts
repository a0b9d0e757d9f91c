// @kiln/core without its YAML loading (yaml and zod are a tenth of a small
// command's memory): for the format library and the commands built on it
// alone, such as `kiln index`.
export * from "./errors.js";
export * from "./http.js";
export * from "./paths.js";
export * from "./secret-file.js";
export * from "./arch.js";
export * from "./atomic.js";
export * from "./version.js";
export * from "./process.js";
