package controlplane

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// TestObserverAddress: the address adaptive ensembles post observations
// to is --observe-addr, else the admin listener's, never an unspecified
// host; a malformed one is an error naming it; without a loop there is
// none. A load's context carries it to the loader.
func TestObserverAddress(t *testing.T) {
	loop, err := closedloop.New(closedloop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		loop    *closedloop.Loop
		observe string
		admin   string
		want    *model.Endpoint
		err     string
	}{
		"admin listener":     {loop: loop, admin: "127.0.0.1:5555", want: &model.Endpoint{Address: "127.0.0.1", Port: 5555}},
		"every interface":    {loop: loop, admin: "0.0.0.0:5555", want: &model.Endpoint{Address: "127.0.0.1", Port: 5555}},
		"every v6 interface": {loop: loop, admin: "[::]:5555", want: &model.Endpoint{Address: "127.0.0.1", Port: 5555}},
		"flag":               {loop: loop, observe: "cp.example:18001", admin: "127.0.0.1:5555", want: &model.Endpoint{Address: "cp.example", Port: 18001}},
		"v6 flag":            {loop: loop, observe: "[fd00::1]:18001", admin: "127.0.0.1:5555", want: &model.Endpoint{Address: "fd00::1", Port: 18001}},
		"no port":            {loop: loop, observe: "cp.example", admin: "127.0.0.1:5555", err: `observe address "cp.example"`},
		"port zero":          {loop: loop, observe: "cp.example:0", admin: "127.0.0.1:5555", err: `observe address "cp.example:0": want a port in 1..65535`},
		"no loop":            {observe: "cp.example:18001", admin: "127.0.0.1:5555"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cp := &plane{cfg: Config{Loop: tc.loop, ObserveAddr: tc.observe, ObservePercent: 40}, log: slog.New(slog.DiscardHandler)}
			admin, err := net.ResolveTCPAddr("tcp", tc.admin)
			if err != nil {
				t.Fatal(err)
			}
			err = cp.setObserver(admin)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, _ := cp.hook(context.Background())
			got := observerOf(ctx)
			switch {
			case tc.want == nil && got != nil:
				t.Fatalf("observer %+v without a loop", got)
			case tc.want != nil && (got == nil || got.Endpoint != *tc.want || got.Percent != 40):
				t.Fatalf("observer %+v, want %+v at 40%%", got, *tc.want)
			}
		})
	}
}
