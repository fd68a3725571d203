/**
 * Helpers for tests and simulator demos, not for production: with no real guest, a veth pair stands in for the
 * guest's NIC so the host side (routes, NAT, the firewall) can be exercised with real packets.
 */
export { guestStandIn } from './options.js';
