/**
 * What Docker leaves in a namespace through iptables-nft (as `nft list ruleset` shows it on a Docker host with
 * the default bridge): tables of family ip named filter and nat. Its `FORWARD` chain has policy drop, and
 * `DOCKER-USER` is the chain Docker leaves to the host's owner.
 */
export const dockerLikeTables = `
table ip filter {
  chain DOCKER { }
  chain DOCKER-ISOLATION-STAGE-1 { iifname "docker0" oifname != "docker0" counter jump DOCKER-ISOLATION-STAGE-2; counter return; }
  chain DOCKER-ISOLATION-STAGE-2 { oifname "docker0" counter drop; counter return; }
  chain DOCKER-USER { counter return; }
  chain FORWARD {
    type filter hook forward priority filter; policy drop;
    counter jump DOCKER-USER
    counter jump DOCKER-ISOLATION-STAGE-1
    oifname "docker0" ct state related,established counter accept
    oifname "docker0" counter jump DOCKER
    iifname "docker0" oifname != "docker0" counter accept
    iifname "docker0" oifname "docker0" counter accept
  }
}
table ip nat {
  chain DOCKER { iifname "docker0" counter return; }
  chain PREROUTING { type nat hook prerouting priority dstnat; policy accept; fib daddr type local counter jump DOCKER; }
  chain OUTPUT { type nat hook output priority -100; policy accept; ip daddr != 127.0.0.0/8 fib daddr type local counter jump DOCKER; }
  chain POSTROUTING { type nat hook postrouting priority srcnat; policy accept; ip saddr 172.17.0.0/16 oifname != "docker0" counter masquerade; }
}
`;

/**
 * The remedy the README gives: accept a VM's TAP both ways in `DOCKER-USER` (what
 * `iptables -I DOCKER-USER -i <tap> -j ACCEPT` and `-o <tap>` write). Our table still drops what the VM's
 * policy denies: an accept ends only Docker's chain.
 */
export const dockerUserAccept = (tapName: string): string => `
insert rule ip filter DOCKER-USER oifname "${tapName}" accept
insert rule ip filter DOCKER-USER iifname "${tapName}" accept
`;
