export {
  type AppliedFirewall,
  FirewallManager,
  type FirewallManagerOptions,
  type InstalledFirewall,
} from './firewall-manager.js';
export {
  type FirewallPrimitive,
  type FirewallPrimitiveOptions,
  firewallPrimitive,
} from './firewall-primitive.js';
export type { VmChains } from './nft-script.js';
export {
  type EgressRule,
  type FirewallPolicy,
  type FirewallPreset,
  type FirewallTarget,
  firewallPresets,
  type HostPortRule,
  type NormalisedPolicy,
  nonPublicIpv4Ranges,
  type PortForward,
  type PortSpec,
  type RuleProtocol,
  validatePolicy,
} from './policy.js';
