/**
 * Facts stamped in at build time. `deno task compile` rewrites this file in a temporary copy of the tree; from
 * source both are `null` and the version command asks git for the commit.
 * @module
 */

/** The semantic version of this Galaxy. */
export const GALAXY_VERSION = "0.1.0";
/** The git commit the executable was built from, when known at build time. */
export const BUILD_COMMIT: string | null = null;
/** The ISO time the executable was built, when known at build time. */
export const BUILD_TIME: string | null = null;
