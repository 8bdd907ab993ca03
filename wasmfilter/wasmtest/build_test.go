package wasmtest_test

import (
	"testing"

	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

func TestFilterName(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/maestro-ml/maestro/wasmfilter/slo/cmd":                 "slo",
		"./wasmfilter/fanout/cmd/":                                         "fanout",
		"github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/probe": "probe",
	} {
		if got := wasmtest.FilterName(in); got != want {
			t.Errorf("FilterName(%q) = %q, want %q", in, got, want)
		}
	}
}
