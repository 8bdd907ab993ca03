package tensor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// scanner reads JSON from a stream one scalar or delimiter at a time,
// without building values: encoding/json's Decoder.Token allocates for
// every element and decodes a 60 MB body about ten times slower.
type scanner struct {
	r   *bufio.Reader
	off int64 // bytes consumed, for error positions
	buf []byte
}

// maxScanBuffer is the read buffer of a large body.
const maxScanBuffer = 64 << 10

// newScanner reads r, whose length is at most size bytes (0: unknown). A
// small body gets a buffer its size: a 1-row request is a few hundred
// bytes, and a 64 KiB buffer for each was four fifths of the bytes the
// REST path allocated (BenchmarkHTTPFraud).
func newScanner(r io.Reader, size int64) *scanner {
	n := maxScanBuffer
	if size > 0 && size < maxScanBuffer {
		n = max(int(size), 512)
	}
	return &scanner{r: bufio.NewReaderSize(r, n)}
}

// errSyntax marks malformed JSON, a caller's error.
var errSyntax = fmt.Errorf("malformed JSON: %w", ErrInvalid)

func (s *scanner) syntaxf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s: %w", s.off, fmt.Sprintf(format, args...), errSyntax)
}

// readErr turns a read error into a syntax error at end of input, and
// passes the others (limits, deadlines) through.
func (s *scanner) readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return s.syntaxf("unexpected end of input")
	}
	return err
}

// peek returns the next byte that is not white space, without consuming
// it; io.EOF at the end of input.
func (s *scanner) peek() (byte, error) {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			s.off++
			continue
		}
		_ = s.r.UnreadByte()
		return c, nil
	}
}

// expect consumes the next non-space byte, which must be c.
func (s *scanner) expect(c byte, what string) error {
	got, err := s.peek()
	if err != nil {
		return s.readErr(err)
	}
	if got != c {
		return s.syntaxf("%s: want %q, got %q", what, c, got)
	}
	_, _ = s.r.ReadByte()
	s.off++
	return nil
}

// more reports whether another element follows in an array or object
// (consuming its comma), or consumes the closing delimiter.
func (s *scanner) more(end byte, first bool) (bool, error) {
	c, err := s.peek()
	if err != nil {
		return false, s.readErr(err)
	}
	if c == end {
		_, _ = s.r.ReadByte()
		s.off++
		return false, nil
	}
	if first {
		return true, nil
	}
	if c != ',' {
		return false, s.syntaxf("want ',' or %q, got %q", end, c)
	}
	_, _ = s.r.ReadByte()
	s.off++
	if c, err := s.peek(); err == nil && c == end {
		return false, s.syntaxf("trailing comma")
	}
	return true, nil
}

// scalarKind is the kind of a scalar token.
type scalarKind uint8

const (
	kindNumber scalarKind = iota
	kindString
	kindTrue
	kindFalse
	kindNull
)

// Bounds on what a body may make the scanner hold or recurse into.
const (
	// maxDepth bounds nesting: deeper data or parameters would otherwise
	// cost stack or bookkeeping in proportion to the body.
	maxDepth = 64
	// maxName bounds strings that are not data (names, ids, keys), which
	// would otherwise be copied whole, outside the memory budget.
	maxName = 64 << 10
)

// scalar reads one number, string or literal. The bytes are valid until
// the next call; a string's are its raw JSON form, quotes included.
func (s *scanner) scalar() (scalarKind, []byte, error) { return s.scalarMax(-1) }

// scalarMax is scalar with strings bounded to maxLen bytes; 0 drops a
// string's bytes instead of keeping them, -1 keeps any length.
func (s *scanner) scalarMax(maxLen int) (scalarKind, []byte, error) {
	c, err := s.peek()
	if err != nil {
		return 0, nil, s.readErr(err)
	}
	s.buf = s.buf[:0]
	if c == '"' {
		return kindString, s.buf, s.str(maxLen)
	}
	// Fast path: the token ends within the buffered bytes.
	if b, _ := s.r.Peek(s.r.Buffered()); len(b) > 0 {
		if i := tokenEnd(b); i > 0 {
			s.buf = append(s.buf, b[:i]...)
			_, _ = s.r.Discard(i)
			s.off += int64(i)
			return s.classify()
		}
	}
	for {
		c, err := s.r.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, err
		}
		if c == ',' || c == ']' || c == '}' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			_ = s.r.UnreadByte()
			break
		}
		s.buf = append(s.buf, c)
		s.off++
		if len(s.buf) > 400 {
			return 0, nil, s.syntaxf("value too long")
		}
	}
	return s.classify()
}

// tokenEnd is the length of the scalar at the start of b, or 0 when b
// holds no delimiter after it (the token may continue past b).
func tokenEnd(b []byte) int {
	for i, c := range b {
		switch c {
		case ',', ']', '}', ':', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return 0
}

// classify tells the kind of the scalar in s.buf.
func (s *scanner) classify() (scalarKind, []byte, error) {
	switch string(s.buf) {
	case "true":
		return kindTrue, s.buf, nil
	case "false":
		return kindFalse, s.buf, nil
	case "null":
		return kindNull, s.buf, nil
	}
	if !isJSONNumber(s.buf) {
		return 0, nil, s.syntaxf("%q is not a JSON value", s.buf)
	}
	return kindNumber, s.buf, nil
}

// str reads a string token, quotes included, into s.buf (see scalarMax
// for maxLen).
func (s *scanner) str(maxLen int) error {
	keep := func(c byte) error {
		if maxLen == 0 {
			return nil
		}
		if maxLen > 0 && len(s.buf) >= maxLen+2 {
			return s.syntaxf("string longer than %d bytes", maxLen)
		}
		s.buf = append(s.buf, c)
		return nil
	}
	c, _ := s.r.ReadByte()
	_ = keep(c)
	s.off++
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return s.readErr(err)
		}
		if err := keep(c); err != nil {
			return err
		}
		s.off++
		switch {
		case c == '\\':
			c, err := s.r.ReadByte()
			if err != nil {
				return s.readErr(err)
			}
			if err := keep(c); err != nil {
				return err
			}
			s.off++
		case c == '"':
			return nil
		case c < 0x20:
			return s.syntaxf("control character in string")
		}
	}
}

// text decodes a string token read by scalar.
func (s *scanner) text(raw []byte) (string, error) {
	if !hasEscape(raw) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", s.syntaxf("bad string: %v", err)
	}
	return v, nil
}

func hasEscape(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' {
			return true
		}
	}
	return false
}

// stringValue reads a value that must be a string of at most maxName
// bytes.
func (s *scanner) stringValue(what string) (string, error) {
	k, raw, err := s.scalarMax(maxName)
	if err != nil {
		return "", err
	}
	if k != kindString {
		return "", s.syntaxf("%s: want a string", what)
	}
	return s.text(raw)
}

// skip consumes one value of any kind, keeping nothing of it.
func (s *scanner) skip() error { return s.skipAt(0) }

func (s *scanner) skipAt(depth int) error {
	if depth > maxDepth {
		return s.syntaxf("nested deeper than %d levels", maxDepth)
	}
	c, err := s.peek()
	if err != nil {
		return s.readErr(err)
	}
	switch c {
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		_, _ = s.r.ReadByte()
		s.off++
		for first := true; ; first = false {
			ok, err := s.more(end, first)
			if err != nil || !ok {
				return err
			}
			if c == '{' {
				if _, err := s.stringValue("object key"); err != nil {
					return err
				}
				if err := s.expect(':', "object"); err != nil {
					return err
				}
			}
			if err := s.skipAt(depth + 1); err != nil {
				return err
			}
		}
	}
	_, _, err = s.scalarMax(0)
	return err
}

// unsafeString views b as a string for a parse that does not keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// isJSONNumber reports whether s follows JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
