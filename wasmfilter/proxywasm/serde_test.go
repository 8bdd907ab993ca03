package proxywasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSerializeMapLayout(t *testing.T) {
	got := SerializeMap([][2]string{{":path", "/v2"}, {"k", ""}})
	want := []byte{
		2, 0, 0, 0, // count
		5, 0, 0, 0, 3, 0, 0, 0, // ":path" -> "/v2"
		1, 0, 0, 0, 0, 0, 0, 0, // "k" -> ""
		':', 'p', 'a', 't', 'h', 0, '/', 'v', '2', 0,
		'k', 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SerializeMap = %v, want %v", got, want)
	}
}

func TestMapRoundTrip(t *testing.T) {
	tests := map[string][][2]string{
		"empty":         {},
		"one":           {{"content-type", "application/json"}},
		"pseudo first":  {{":method", "POST"}, {":path", "/v2/models/m/infer"}, {":authority", "x"}},
		"repeated keys": {{"set-cookie", "a"}, {"set-cookie", "b"}},
		"empty values":  {{"", ""}, {"x", ""}},
		"binary value":  {{"grpc-status-details-bin", "\x01\x00\xff"}},
	}
	for name, pairs := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DeserializeMap(SerializeMap(pairs))
			if err != nil {
				t.Fatal(err)
			}
			if len(pairs) == 0 {
				if len(got) != 0 {
					t.Fatalf("got %v, want empty", got)
				}
				return
			}
			if !reflect.DeepEqual(got, pairs) {
				t.Fatalf("round trip = %q, want %q", got, pairs)
			}
		})
	}
}

func TestDeserializeMapRejects(t *testing.T) {
	valid := SerializeMap([][2]string{{"a", "bc"}})
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint32(huge, 1<<31)
	badSize := bytes.Clone(valid)
	binary.LittleEndian.PutUint32(badSize[8:], 200)
	noNUL := bytes.Clone(valid)
	noNUL[len(noNUL)-1] = 'x'
	tests := map[string]struct {
		in   []byte
		want string
	}{
		"short count":    {[]byte{1, 0}, "shorter than the 4-byte count"},
		"count too big":  {huge, "does not fit"},
		"size past end":  {badSize, "pair 0: value of 200 bytes runs past the end"},
		"no terminator":  {noNUL, "pair 0: value is not NUL-terminated"},
		"trailing bytes": {append(bytes.Clone(valid), 0), "1 trailing bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DeserializeMap(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPropertyPath(t *testing.T) {
	b := SerializePropertyPath([]string{"request", "path"})
	if string(b) != "request\x00path" {
		t.Fatalf("path = %q", b)
	}
	if got := DeserializePropertyPath(b); !reflect.DeepEqual(got, []string{"request", "path"}) {
		t.Fatalf("split = %q", got)
	}
}

func TestStatusErrRoundTrip(t *testing.T) {
	for _, s := range []Status{StatusOK, StatusNotFound, StatusBadArgument, StatusSerializationFailure,
		StatusParseFailure, StatusInvalidMemoryAccess, StatusEmpty, StatusCasMismatch,
		StatusInternalFailure, StatusUnimplemented} {
		if got := StatusOf(s.Err()); got != s {
			t.Errorf("StatusOf(%d.Err()) = %d", s, got)
		}
	}
	if !errors.Is(StatusCasMismatch.Err(), ErrCasMismatch) {
		t.Fatal("cas mismatch does not match its sentinel")
	}
	if err := Status(99).Err(); err == nil || !strings.Contains(err.Error(), "99") {
		t.Fatalf("unknown status error = %v", err)
	}
}

// FuzzDeserializeMap: no input may panic, and whatever decodes must
// re-encode to the same bytes (the format has exactly one encoding).
func FuzzDeserializeMap(f *testing.F) {
	f.Add([]byte{})
	f.Add(SerializeMap([][2]string{{":status", "200"}, {"grpc-status", "0"}}))
	f.Add(SerializeMap([][2]string{{"", ""}}))
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := DeserializeMap(b)
		if err != nil {
			return
		}
		if len(b) == 0 {
			return
		}
		if again := SerializeMap(pairs); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %q = %v, want %v", pairs, again, b)
		}
	})
}

// The VM serializes maps for host calls into one reused buffer; what it
// hands the host must be exactly SerializeMap's bytes, whatever the
// buffer held before.
func TestHostMapsMatchSerializeMap(t *testing.T) {
	var d dispatcher
	tests := []struct {
		name string
		a, b [][2]string
	}{
		{"one map", [][2]string{{":path", "/v2"}, {"k", ""}}, nil},
		{"two maps", [][2]string{{"x-request-id", "1"}}, [][2]string{{"grpc-status", "0"}, {"grpc-message", ""}}},
		{"shorter after longer", [][2]string{{"a", "b"}}, nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ab, bb := d.hostMaps(tt.a, tt.b)
			if want := SerializeMap(tt.a); !bytes.Equal(ab, want) {
				t.Errorf("first map = %v, want %v", ab, want)
			}
			if want := SerializeMap(tt.b); !bytes.Equal(bb, want) {
				t.Errorf("second map = %v, want %v", bb, want)
			}
			if cap(ab) != len(ab) {
				t.Errorf("first map has capacity %d past its %d bytes: an append would overwrite the second", cap(ab), len(ab))
			}
		})
	}
}

func TestAppendMapKeepsPrefix(t *testing.T) {
	pairs := [][2]string{{"te", "trailers"}, {"x", "y"}}
	got := AppendMap([]byte("prefix"), pairs)
	if want := append([]byte("prefix"), SerializeMap(pairs)...); !bytes.Equal(got, want) {
		t.Fatalf("AppendMap = %q, want %q", got, want)
	}
}

// AppendHeaderMap decodes into the caller's slice: after what it holds,
// in its room when there is enough, for both the copying and the sharing
// decoder.
func TestDeserializeMapAppends(t *testing.T) {
	pairs := [][2]string{{":method", "POST"}, {"te", "trailers"}}
	for _, share := range []bool{false, true} {
		room := make([][2]string, 1, 8)
		room[0] = [2]string{"held", "1"}
		got, err := deserializeMap(room, SerializeMap(pairs), share)
		if err != nil {
			t.Fatal(err)
		}
		if want := append([][2]string{{"held", "1"}}, pairs...); !reflect.DeepEqual(got, want) {
			t.Errorf("share %v: %q, want %q", share, got, want)
		}
		if &got[0] != &room[0] {
			t.Errorf("share %v: the slice's room was not used", share)
		}
		if _, err := deserializeMap(room[:0], []byte{1, 0, 0}, share); err == nil {
			t.Errorf("share %v: a short map was accepted", share)
		}
	}
}
