/**
 * `galaxy help`: what the executable can be run as.
 * @module
 */

/** The usage text for `galaxy`. */
export function usage(): string {
  return `Usage: galaxy <subcommand> [flags]

Subcommands:
  serve        run the node daemon (see "galaxy serve --help")
  version      print the version (also "galaxy --version")
  install      put the executable, its plugin names and the CNI config in place (--uninstall reverses it)
  healthcheck  ask the daemon whether it is ready (exit 0/1), for probes
  demo         build two pods in throwaway namespaces and show that they talk
  plan         show what an ADD of NAMESPACE/POD would do, without doing it (exit 0/1)
  audit        cross-check state files, sandboxes, reservations and kernel objects (--fix releases orphans)
  help         print this text

Run under one of these names (a link to this executable), it is a CNI plugin:
  galaxy-sdn            the CNI shim that relays to "galaxy serve"
  galaxy-veth, galaxy-k8s-vlan, galaxy-underlay-veth, galaxy-k8s-sriov, tke-route-eni, galaxy-flannel

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
