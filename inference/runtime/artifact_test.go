package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadArtifact(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"model.json": "default", "other.json": "chosen"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		params map[string]string
		want   string // data, or an error fragment after "err:"
	}{
		{nil, "default"},
		{map[string]string{"model_file": "other.json"}, "chosen"},
		{map[string]string{"model_file": "../model.json"}, `err:parameter model_file "../model.json": want a file name`},
		{map[string]string{"model_file": "missing.json"}, "err:read test model:"},
	} {
		path, data, err := ReadArtifact(ctx, Spec{Dir: dir, Params: tc.params}, "model.json", "test model")
		if want, isErr := strings.CutPrefix(tc.want, "err:"); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: got %v, want an error containing %q", tc.params, err, want)
			}
			continue
		}
		if err != nil || string(data) != tc.want || filepath.Dir(path) != dir {
			t.Errorf("%v: got %q from %s, %v; want %q", tc.params, data, path, err, tc.want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := ReadArtifact(cancelled, Spec{Dir: dir}, "model.json", "test model"); err == nil {
		t.Error("a cancelled load read on")
	}
}
