/**
 * Kept for build scripts that import the launchers from here: they live in `cli/launchers.ts`, since
 * `galaxy install` and `galaxy demo` write them too and nothing the executable runs may import `tools/`.
 * @module
 */
export { EXECUTABLE_NAMES, LAUNCHER_HEADER, launcherScript, writeLaunchers } from "../cli/launchers.ts";
