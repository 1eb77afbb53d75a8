package verify

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseCIDRs(t *testing.T) {
	t.Parallel()
	got, err := ParseCIDRs([]string{
		"192.0.2.0/24",
		"2001:db8::/32",
		"203.0.113.7",
		"2001:db8::1",
		" 10.0.0.0/8 ",
		"10.1.2.3/8",
		"::ffff:198.51.100.0/120",
		"::ffff:198.51.100.9",
		"0.0.0.0/0",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"192.0.2.0/24",
		"2001:db8::/32",
		"203.0.113.7/32",
		"2001:db8::1/128",
		"10.0.0.0/8",
		"10.0.0.0/8",
		"198.51.100.0/24",
		"198.51.100.9/32",
		"0.0.0.0/0",
	}
	if len(got) != len(want) {
		t.Fatalf("ParseCIDRs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d: %v, want %s", i, got[i], want[i])
		}
	}

	if got, err := ParseCIDRs(nil); err != nil || len(got) != 0 {
		t.Errorf("ParseCIDRs(nil) = %v, %v", got, err)
	}

	for _, bad := range []string{"", "10.0.0/8", "10.0.0.0/33", "2001:db8::/129", "host.example", "fe80::1%eth0", "fe80::%eth0/64", "1.2.3.4/", "1.2.3.4/-1", "192.0.2.0 /24"} {
		_, err := ParseCIDRs([]string{"192.0.2.0/24", bad})
		if err == nil {
			t.Errorf("ParseCIDRs(%q): no error", bad)
			continue
		}
		if !strings.Contains(err.Error(), `"`+strings.TrimSpace(bad)+`"`) {
			t.Errorf("ParseCIDRs(%q): error %q does not name the entry", bad, err)
		}
	}
}

func TestAllowedSource(t *testing.T) {
	t.Parallel()
	list := []string{"192.0.2.0/24", "203.0.113.7", "2001:db8::/32", "::ffff:198.51.100.0/120"}
	for _, tc := range []struct {
		name  string
		cidrs []string
		ip    string // "" is the zero Addr
		want  bool
	}{
		{"nil list allows all", nil, "198.18.0.1", true},
		{"empty list allows all", []string{}, "2001:db8::1", true},
		{"empty list allows even the zero Addr", nil, "", true},
		{"IPv4 in range", list, "192.0.2.200", true},
		{"IPv4 out of range", list, "192.0.3.1", false},
		{"single IPv4", list, "203.0.113.7", true},
		{"single IPv4 neighbour", list, "203.0.113.8", false},
		{"IPv6 in range", list, "2001:db8:ffff::1", true},
		{"IPv6 out of range", list, "2001:db9::1", false},
		{"IPv4-mapped client in IPv4 range", list, "::ffff:192.0.2.10", true},
		{"IPv4-mapped client out of range", list, "::ffff:192.0.3.10", false},
		{"IPv4 client in IPv4-mapped range", list, "198.51.100.20", true},
		{"IPv4-mapped client in IPv4-mapped range", list, "::ffff:198.51.100.20", true},
		{"zoned IPv6 address", []string{"fe80::/10"}, "fe80::1%eth0", true},
		{"IPv4 client against ::/0", []string{"::/0"}, "192.0.2.1", false},
		{"IPv6 client against 0.0.0.0/0", []string{"0.0.0.0/0"}, "2001:db8::1", false},
		{"zero Addr against a list", list, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			got, err := AllowedSource(tc.cidrs, ip)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("AllowedSource(%v, %v) = %v, want %v", tc.cidrs, tc.ip, got, tc.want)
			}
		})
	}

	ok, err := AllowedSource([]string{"192.0.2.0/24", "not-an-ip"}, netip.MustParseAddr("192.0.2.1"))
	if err == nil || ok {
		t.Errorf("AllowedSource with a bad entry = %v, %v; want false and an error", ok, err)
	}
}
