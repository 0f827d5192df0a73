/**
 * Kept for `tools/compile.ts`: the permissions live in `cli/permissions.ts`, since the launchers that
 * `galaxy install` writes carry them too and nothing the executable runs may import `tools/`.
 * @module
 */
export { PERMISSION_FLAGS } from "../cli/permissions.ts";
