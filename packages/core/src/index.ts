// @kiln/core: what every kiln package shares.
export * from "./errors.js";
export * from "./http.js";
export * from "./paths.js";
export * from "./secret-file.js";
export * from "./yaml-load.js";
export * from "./arch.js";
export * from "./atomic.js";
export * from "./version.js";
export * from "./process.js";
