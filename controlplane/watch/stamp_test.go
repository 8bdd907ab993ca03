package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStampChangesWithEveryWrite(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mesh.yaml")
	write(t, file, "a")
	// A file named outside the directory, as an endpoints file may be.
	other := filepath.Join(t.TempDir(), "eps.yaml")
	write(t, other, "x")
	stamp := func() string { return Stamp(dir, other) }
	tests := []struct {
		name    string
		change  func(t *testing.T)
		changed bool
	}{
		{"nothing", func(*testing.T) {}, false},
		{"append", func(t *testing.T) { write(t, file, "ab") }, true},
		{"same size, later time", func(t *testing.T) {
			write(t, file, "ac")
			if err := os.Chtimes(file, time.Now(), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"truncate", func(t *testing.T) {
			if err := os.Truncate(file, 0); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"new file", func(t *testing.T) { write(t, filepath.Join(dir, "routes.yaml"), "r") }, true},
		{"hidden file", func(t *testing.T) { write(t, filepath.Join(dir, ".mesh.yaml.swp"), "s") }, false},
		{"named file", func(t *testing.T) { write(t, other, "xy") }, true},
		{"named file removed", func(t *testing.T) {
			if err := os.Remove(other); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		before := stamp()
		tc.change(t)
		if after := stamp(); (after != before) != tc.changed {
			t.Errorf("%s: stamp changed = %v, want %v", tc.name, after != before, tc.changed)
		}
	}
}
