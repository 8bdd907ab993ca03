package embedding

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The binary artifact (".bin") holds the same table as the JSON one in a
// quarter of the space and loads without parsing text. All values are
// little-endian:
//
//	magic "MEMB", version uint32 (1), dim uint32, users uint32, items uint32,
//	user ids   users x int64,
//	item ids   items x int64,
//	users      users x dim float32, row-major,
//	items      items x dim float32, row-major.
const (
	binaryMagic   = "MEMB"
	binaryVersion = 1
	headerLen     = 20
)

// MarshalBinary encodes t in the binary artifact format. Vectors are
// stored as float32.
func (t *Table) MarshalBinary() ([]byte, error) {
	nu, ni := len(t.UserIDs), len(t.ItemIDs)
	if len(t.Users) != nu*t.Dim || len(t.Items) != ni*t.Dim {
		return nil, errors.New("table vectors do not match its ids and dim")
	}
	var b bytes.Buffer
	b.Grow(headerLen + 8*(nu+ni) + 4*t.Dim*(nu+ni))
	b.WriteString(binaryMagic)
	for _, v := range []uint32{binaryVersion, uint32(t.Dim), uint32(nu), uint32(ni)} {
		b.Write(binary.LittleEndian.AppendUint32(nil, v))
	}
	var w [8]byte
	for _, ids := range [][]int64{t.UserIDs, t.ItemIDs} {
		for _, id := range ids {
			binary.LittleEndian.PutUint64(w[:], uint64(id))
			b.Write(w[:])
		}
	}
	for _, vs := range [][]float64{t.Users, t.Items} {
		for _, v := range vs {
			binary.LittleEndian.PutUint32(w[:4], math.Float32bits(float32(v)))
			b.Write(w[:4])
		}
	}
	return b.Bytes(), nil
}

// ParseBinary decodes and validates a binary artifact. The length must be
// exactly what the header announces, ids unique and values finite.
func ParseBinary(data []byte) (*Table, error) {
	if len(data) < headerLen || string(data[:4]) != binaryMagic {
		return nil, fmt.Errorf("header: not a %q file", binaryMagic)
	}
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(data[off:]) }
	if v := u32(4); v != binaryVersion {
		return nil, fmt.Errorf("header: version %d, want %d", v, binaryVersion)
	}
	dim, nu, ni := uint64(u32(8)), uint64(u32(12)), uint64(u32(16))
	if dim < 1 || dim > maxDim {
		return nil, fmt.Errorf("header: dim %d out of range [1, %d]", dim, maxDim)
	}
	if nu < 1 || nu > maxRows || ni < 1 || ni > maxRows {
		return nil, fmt.Errorf("header: %d users and %d items, want 1 to %d each", nu, ni, maxRows)
	}
	// Bounded above, so no product overflows.
	want := headerLen + 8*(nu+ni) + 4*dim*(nu+ni)
	if uint64(len(data)) != want {
		return nil, fmt.Errorf("length: %d bytes, the header announces %d", len(data), want)
	}
	off := headerLen
	ids := func(n uint64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(data[off:]))
			off += 8
		}
		return out
	}
	vecs := func(field string, n uint64) ([]float64, error) {
		out := make([]float64, n*dim)
		for i := range out {
			v := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
			off += 4
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%s[%d][%d]: %v is not finite", field, uint64(i)/dim, uint64(i)%dim, v)
			}
			out[i] = float64(v)
		}
		return out, nil
	}
	t := &Table{Dim: int(dim), UserIDs: ids(nu), ItemIDs: ids(ni)}
	var err error
	if t.Users, err = vecs("users", nu); err != nil {
		return nil, err
	}
	if t.Items, err = vecs("items", ni); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		field string
		ids   []int64
	}{{"user_ids", t.UserIDs}, {"item_ids", t.ItemIDs}} {
		seen := make(map[int64]int, len(c.ids))
		for i, id := range c.ids {
			if j, dup := seen[id]; dup {
				return nil, fmt.Errorf("%s[%d]: id %d already at index %d", c.field, i, id, j)
			}
			seen[id] = i
		}
	}
	return t, nil
}
