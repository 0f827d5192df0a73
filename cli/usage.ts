/**
 * `galaxy help`: what the executable can be run as.
 * @module
 */
import { CNI_EXECUTABLES, type Executable, SUBCOMMANDS } from "./executables.ts";

/** The usage text for `galaxy`, listing every subcommand and executable name of the registry. */
export function usage(): string {
  const rows = (table: Readonly<Record<string, Executable>>, width: number) =>
    Object.entries(table).map(([name, e]) => `  ${name.padEnd(width)} ${e.summary}`).join("\n");
  return `Usage: galaxy <subcommand> [flags]

Subcommands:
${rows(SUBCOMMANDS, 12)}

Run under one of these names (a link to this executable), it is a CNI plugin:
${rows(CNI_EXECUTABLES, 21)}

With CNI_COMMAND set and no known name, it acts as galaxy-sdn.`;
}

/** Prints the usage text. */
export function main(args: string[]): Promise<number> {
  if (args.length > 0) {
    console.error(`galaxy help: unexpected argument "${args[0]}"`);
    console.error(usage());
    return Promise.resolve(2);
  }
  console.log(usage());
  return Promise.resolve(0);
}
