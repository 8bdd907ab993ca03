package slo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Bucket counts the requests that finished in one window bucket.
type Bucket struct {
	// Index is the bucket's start time divided by the bucket width.
	Index  int64
	Total  uint64
	Errors uint64
	// Slow counts requests over each latency target, in the objective's
	// order.
	Slow []uint64
}

// Record is the shared state of one series: the buckets of its long window
// and which burn-rate alerts are raised. Workers merge into it with
// compare-and-swap, so a raised alert is logged by exactly one of them.
type Record struct {
	Buckets  []Bucket // ascending Index
	Alerting uint64   // bit per (sli, window), see alertBit
}

const recordVersion = 1

// alertBit is the Alerting bit of an SLI (0: errors, 1+i: latency target
// i) over the short (long=false) or long window.
func alertBit(sli int, long bool) uint64 {
	b := uint(2 * sli)
	if long {
		b++
	}
	return 1 << b
}

// Add merges b into the record, keeping buckets ordered.
func (r *Record) Add(b Bucket) {
	i, found := slices.BinarySearchFunc(r.Buckets, b.Index, func(x Bucket, idx int64) int {
		switch {
		case x.Index < idx:
			return -1
		case x.Index > idx:
			return 1
		}
		return 0
	})
	if !found {
		r.Buckets = slices.Insert(r.Buckets, i, Bucket{Index: b.Index})
	}
	dst := &r.Buckets[i]
	dst.Total += b.Total
	dst.Errors += b.Errors
	for len(dst.Slow) < len(b.Slow) {
		dst.Slow = append(dst.Slow, 0)
	}
	for j, n := range b.Slow {
		dst.Slow[j] += n
	}
}

// Trim drops buckets older than minIndex.
func (r *Record) Trim(minIndex int64) {
	i := 0
	for i < len(r.Buckets) && r.Buckets[i].Index < minIndex {
		i++
	}
	r.Buckets = r.Buckets[i:]
}

// Sum adds up the buckets with from <= Index <= to.
func (r *Record) Sum(from, to int64, targets int) Bucket {
	s := Bucket{Slow: make([]uint64, targets)}
	for _, b := range r.Buckets {
		if b.Index < from || b.Index > to {
			continue
		}
		s.Total += b.Total
		s.Errors += b.Errors
		for j := 0; j < len(b.Slow) && j < targets; j++ {
			s.Slow[j] += b.Slow[j]
		}
	}
	return s
}

// MarshalBinary encodes the record compactly with varints: version,
// alerting bits, bucket count, then per bucket the index delta, total,
// errors and slow counts.
func (r *Record) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, 16+len(r.Buckets)*8)
	out = append(out, recordVersion)
	out = binary.AppendUvarint(out, r.Alerting)
	out = binary.AppendUvarint(out, uint64(len(r.Buckets)))
	var prev int64
	for i, b := range r.Buckets {
		if i == 0 {
			out = binary.AppendVarint(out, b.Index)
		} else {
			out = binary.AppendUvarint(out, uint64(b.Index-prev))
		}
		prev = b.Index
		out = binary.AppendUvarint(out, b.Total)
		out = binary.AppendUvarint(out, b.Errors)
		out = binary.AppendUvarint(out, uint64(len(b.Slow)))
		for _, n := range b.Slow {
			out = binary.AppendUvarint(out, n)
		}
	}
	return out, nil
}

// errCorrupt marks shared data that does not decode as a Record.
var errCorrupt = errors.New("corrupt slo record")

// UnmarshalBinary decodes MarshalBinary's output. Malformed input is an
// error, never a panic: shared data outlives any one module version.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != recordVersion {
		return fmt.Errorf("%w: unknown version", errCorrupt)
	}
	b = b[1:]
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, fmt.Errorf("%w: truncated", errCorrupt)
		}
		b = b[n:]
		return v, nil
	}
	var err error
	if r.Alerting, err = next(); err != nil {
		return err
	}
	count, err := next()
	if err != nil {
		return err
	}
	// Each bucket takes at least four bytes, which bounds the allocation.
	if count > uint64(len(b))/4 {
		return fmt.Errorf("%w: %d buckets in %d bytes", errCorrupt, count, len(b))
	}
	r.Buckets = make([]Bucket, 0, count)
	var prev int64
	for i := uint64(0); i < count; i++ {
		var bk Bucket
		if i == 0 {
			v, n := binary.Varint(b)
			if n <= 0 {
				return fmt.Errorf("%w: truncated", errCorrupt)
			}
			b = b[n:]
			bk.Index = v
		} else {
			d, err := next()
			if err != nil {
				return err
			}
			if d == 0 || d > 1<<40 {
				return fmt.Errorf("%w: bucket %d out of order", errCorrupt, i)
			}
			bk.Index = prev + int64(d)
		}
		prev = bk.Index
		if bk.Total, err = next(); err != nil {
			return err
		}
		if bk.Errors, err = next(); err != nil {
			return err
		}
		slow, err := next()
		if err != nil {
			return err
		}
		if slow > 8 {
			return fmt.Errorf("%w: %d latency targets", errCorrupt, slow)
		}
		for j := uint64(0); j < slow; j++ {
			n, err := next()
			if err != nil {
				return err
			}
			bk.Slow = append(bk.Slow, n)
		}
		r.Buckets = append(r.Buckets, bk)
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(b))
	}
	return nil
}
