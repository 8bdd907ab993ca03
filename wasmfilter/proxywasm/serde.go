package proxywasm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unsafe"
)

// SerializeMap encodes header pairs in the proxy-wasm map format: a
// little-endian uint32 count, then count pairs of uint32 key and value
// sizes, then every key and value followed by a NUL byte.
func SerializeMap(pairs [][2]string) []byte {
	return AppendMap(make([]byte, 0, mapSize(pairs)), pairs)
}

// mapSize is the size of pairs in the proxy-wasm map format.
func mapSize(pairs [][2]string) int {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + len(p[1]) + 2
	}
	return size
}

// AppendMap appends pairs to dst in the format of SerializeMap.
func AppendMap(dst []byte, pairs [][2]string) []byte {
	start := len(dst)
	dst = slices.Grow(dst, mapSize(pairs))
	out := dst[:start+mapSize(pairs)]
	binary.LittleEndian.PutUint32(out[start:], uint32(len(pairs)))
	sizes := start + 4
	data := sizes + 8*len(pairs)
	for _, p := range pairs {
		binary.LittleEndian.PutUint32(out[sizes:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(out[sizes+4:], uint32(len(p[1])))
		sizes += 8
		data += copy(out[data:], p[0])
		out[data] = 0
		data += copy(out[data+1:], p[1]) + 1
		out[data] = 0
		data++
	}
	return out
}

// DeserializeMap decodes the proxy-wasm map format. An empty input is an
// empty map. Anything malformed (short header, sizes past the end, missing
// NUL terminators, trailing bytes) is an error naming the offending pair,
// never a panic: the bytes come from another program.
func DeserializeMap(b []byte) ([][2]string, error) { return deserializeMap(nil, b, false) }

// deserializeMap appends the pairs of DeserializeMap(b) to dst (nil:
// a slice of their own); with share the strings point into b instead of
// copying it, for a buffer that is never written again.
func deserializeMap(dst [][2]string, b []byte, share bool) ([][2]string, error) {
	if len(b) == 0 {
		return dst, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("header map: %d bytes, shorter than the 4-byte count", len(b))
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	// Every pair needs at least 8 size bytes and 2 NULs, which bounds the
	// count before anything is allocated.
	if n*10 > uint64(len(b)-4) {
		return nil, fmt.Errorf("header map: count %d does not fit in %d bytes", n, len(b))
	}
	start := len(dst)
	pairs := slices.Grow(dst, int(n))[:start+int(n)]
	sizes := 4
	data := uint64(4 + 8*n)
	for i := range pairs[start:] {
		for j := 0; j < 2; j++ {
			l := uint64(binary.LittleEndian.Uint32(b[sizes:]))
			sizes += 4
			end := data + l
			if end >= uint64(len(b)) {
				return nil, fmt.Errorf("header map: pair %d: %s of %d bytes runs past the end", i, part(j), l)
			}
			if b[end] != 0 {
				return nil, fmt.Errorf("header map: pair %d: %s is not NUL-terminated", i, part(j))
			}
			if share {
				pairs[start+i][j] = unsafe.String(unsafe.SliceData(b[data:]), end-data)
			} else {
				pairs[start+i][j] = string(b[data:end])
			}
			data = end + 1
		}
	}
	if data != uint64(len(b)) {
		return nil, fmt.Errorf("header map: %d trailing bytes", uint64(len(b))-data)
	}
	return pairs, nil
}

func part(j int) string {
	if j == 0 {
		return "key"
	}
	return "value"
}

// SerializePropertyPath joins a property path with NUL separators, the form
// proxy_get_property expects (["request", "path"] -> "request\x00path").
func SerializePropertyPath(path []string) []byte {
	// One allocation, not Join's string and then its copy: properties are
	// read on every request.
	n := max(len(path)-1, 0)
	for _, p := range path {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range path {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// DeserializePropertyPath splits a NUL-separated property path.
func DeserializePropertyPath(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}
