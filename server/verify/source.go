package verify

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseCIDRs parses a channel's allowed source ranges. Each entry is a CIDR
// range ("192.0.2.0/24", "2001:db8::/32") or a single address, meaning /32
// or /128. Host bits set in a range are cleared ("10.1.2.3/8" is 10.0.0.0/8),
// and an IPv4-mapped IPv6 range ("::ffff:192.0.2.0/120") becomes its IPv4
// range, so IPv4 clients match it however they are seen.
func ParseCIDRs(cidrs []string) ([]netip.Prefix, error) {
	prefixes := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		p, err := parseCIDR(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("allowed source %q is not a CIDR range (want e.g. 192.0.2.0/24 or 2001:db8::/32)", s)
		}
	} else {
		addr, err := netip.ParseAddr(s)
		if err != nil || addr.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("allowed source %q is not an IP address or CIDR range (want e.g. 192.0.2.7 or 192.0.2.0/24)", s)
		}
		p = netip.PrefixFrom(addr, addr.BitLen())
	}
	if addr := p.Addr(); addr.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(addr.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// AllowedSource reports whether ip may post to a channel whose allowed source
// ranges are cidrs (see ParseCIDRs). An empty list allows every address. An
// IPv4-mapped IPv6 address is matched as the IPv4 address it carries, and a
// zone is ignored; the invalid (zero) Addr is never allowed by a non-empty
// list. The error reports an entry of cidrs that does not parse.
func AllowedSource(cidrs []string, ip netip.Addr) (bool, error) {
	prefixes, err := ParseCIDRs(cidrs)
	if err != nil {
		return false, err
	}
	if len(prefixes) == 0 {
		return true, nil
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true, nil
		}
	}
	return false, nil
}
