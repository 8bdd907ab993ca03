package controlplane

import (
	"fmt"
	"testing"
)

func TestXDSNames(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		extra []string
		want  string
	}{
		{"127.0.0.1:18000", nil, "dns [] ips [127.0.0.1]"},
		{"0.0.0.0:18000", []string{"maestro-xds.maestro.svc", "10.0.0.5"}, "dns [localhost maestro-xds.maestro.svc] ips [127.0.0.1 ::1 10.0.0.5]"},
		{":18000", []string{"127.0.0.1"}, "dns [localhost] ips [127.0.0.1 ::1]"},
		{"xds.example:18000", nil, "dns [xds.example] ips []"},
	} {
		n := XDSNames(tc.addr, tc.extra)
		if got := fmt.Sprintf("dns %v ips %v", n.DNS, n.IPs); got != tc.want {
			t.Errorf("XDSNames(%q, %v) = %s, want %s", tc.addr, tc.extra, got, tc.want)
		}
	}
}
