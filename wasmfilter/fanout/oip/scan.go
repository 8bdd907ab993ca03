package oip

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The REST decoders below read JSON with a small scanner instead of
// encoding/json: inside wasm, Go code runs tens of times slower than
// natively, and reflection plus an interface value per tensor element made
// decoding a one-row request cost milliseconds there. The scanner walks the
// bytes once and allocates only the decoded values.

// maxDepth bounds nesting anywhere in a document.
const maxDepth = 32

type scanner struct {
	data  []byte
	pos   int
	depth int
	// checkOnly validates tensor data and counts its elements in count
	// without converting them (CheckJSONRequest).
	checkOnly bool
	count     int
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.data) {
			return s.errorf("unexpected end of JSON, want %q", c)
		}
		return s.errorf("unexpected %q, want %q", s.data[s.pos], c)
	}
	s.pos++
	return nil
}

// object calls field for each key; field must consume the value.
func (s *scanner) object(field func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.depth++; s.depth > maxDepth {
		return s.errorf("nested deeper than %d levels", maxDepth)
	}
	defer func() { s.depth-- }()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or '}' in object")
		}
	}
}

// array calls elem for each element; elem must consume it.
func (s *scanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.depth++; s.depth > maxDepth {
		return s.errorf("nested deeper than %d levels", maxDepth)
	}
	defer func() { s.depth-- }()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or ']' in array")
		}
	}
}

// str reads a string, unescaping it; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func (s *scanner) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			v := s.data[start:s.pos]
			s.pos++
			if k, ok := known(v); ok {
				return k, nil
			}
			if utf8.Valid(v) {
				return string(v), nil
			}
			return string([]rune(string(v))), nil
		case c == '\\':
			return s.strSlow(start)
		case c < 0x20:
			return "", s.errorf("control character in string")
		}
		s.pos++
	}
	return "", s.errorf("unterminated string")
}

// known returns the constant for the object keys and datatypes of the
// protocol, which every request and answer repeats: the switch compares
// without converting v, so they cost no allocation each.
func known(v []byte) (string, bool) {
	switch string(v) {
	case "name":
		return "name", true
	case "datatype":
		return "datatype", true
	case "shape":
		return "shape", true
	case "data":
		return "data", true
	case "parameters":
		return "parameters", true
	case "model_name":
		return "model_name", true
	case "model_version":
		return "model_version", true
	case "id":
		return "id", true
	case "inputs":
		return "inputs", true
	case "outputs":
		return "outputs", true
	case "FP32":
		return "FP32", true
	case "FP64":
		return "FP64", true
	case "INT64":
		return "INT64", true
	case "INT32":
		return "INT32", true
	case "BOOL":
		return "BOOL", true
	case "BYTES":
		return "BYTES", true
	}
	return "", false
}

func (s *scanner) strSlow(start int) (string, error) {
	b := append([]byte(nil), s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			if utf8.Valid(b) {
				return string(b), nil
			}
			return string([]rune(string(b))), nil
		case c < 0x20:
			return "", s.errorf("control character in string")
		case c != '\\':
			b = append(b, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.data) {
			return "", s.errorf("unterminated string")
		}
		e := s.data[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return "", s.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					r2, ok2 := s.hex4()
					if !ok2 {
						return "", s.errorf("bad \\u escape")
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						b = utf8.AppendRune(b, dec)
						continue
					}
					s.pos = save
				}
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", s.errorf("bad escape \\%c", e)
		}
	}
	return "", s.errorf("unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.pos += 4
	return rune(v), true
}

// number reads a JSON number and returns its text.
func (s *scanner) number() ([]byte, error) {
	s.ws()
	start := s.pos
	d := s.data
	if s.pos < len(d) && d[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(d) && d[s.pos] == '0':
		s.pos++
	case s.pos < len(d) && d[s.pos] >= '1' && d[s.pos] <= '9':
		s.digits()
	default:
		return nil, s.errorf("invalid number")
	}
	if s.pos < len(d) && d[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return nil, s.errorf("invalid number")
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return nil, s.errorf("invalid number")
		}
	}
	return d[start:s.pos], nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

// literal consumes true, false or null.
func (s *scanner) literal(word string) bool {
	s.ws()
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// skip consumes any value.
func (s *scanner) skip() error {
	switch s.peek() {
	case '{':
		return s.object(func(string) error { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		_, err := s.str()
		return err
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	}
	_, err := s.number()
	return err
}

func (s *scanner) lit(word string) error {
	if !s.literal(word) {
		return s.errorf("invalid literal")
	}
	return nil
}

// end checks that only space follows the document.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return s.errorf("data after the JSON value")
	}
	return nil
}

// ParseJSONRequest decodes and checks a REST inference request body.
// Unknown members are ignored, as in the protocol's JSON mapping.
//
// # Errors
//
// ErrInvalid, naming the input and what is wrong with it.
func ParseJSONRequest(body []byte) (*Request, error) {
	return parseJSONRequest(&scanner{data: body})
}

// CheckJSONRequest checks a REST inference request body exactly as
// ParseJSONRequest does, but leaves the inputs' Values and Bytes nil: the
// filter forwards the body as it came and only needs to know it is valid,
// and converting every number is what costs most inside wasm.
//
// # Errors
//
// The same as ParseJSONRequest.
func CheckJSONRequest(body []byte) (*Request, error) {
	return parseJSONRequest(&scanner{data: body, checkOnly: true})
}

func parseJSONRequest(s *scanner) (*Request, error) {
	r := &Request{}
	err := s.object(func(key string) error {
		switch key {
		case "id":
			v, err := s.str()
			r.ID = v
			return err
		case "inputs":
			r.Inputs = r.Inputs[:0] // a repeated key: the last one wins
			return s.array(func() error {
				t, err := s.tensor("inputs", len(r.Inputs))
				r.Inputs = append(r.Inputs, t)
				return err
			})
		}
		return s.skip()
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, wrapScan("request body", err)
	}
	if len(r.Inputs) == 0 {
		return nil, invalidf("request body: no inputs")
	}
	return r, nil
}

// DecodeJSONResponse decodes a REST inference response body. A body with
// an "error" member is reported as that error.
func DecodeJSONResponse(body []byte) (*Response, error) {
	s := &scanner{data: body}
	r := &Response{}
	var modelErr string
	err := s.object(func(key string) error {
		var err error
		switch key {
		case "model_name":
			r.ModelName, err = s.str()
		case "model_version":
			r.ModelVersion, err = s.str()
		case "id":
			r.ID, err = s.str()
		case "error":
			modelErr, err = s.str()
		case "parameters":
			r.Parameters, err = s.params()
		case "outputs":
			r.Outputs = r.Outputs[:0]
			err = s.array(func() error {
				t, err := s.tensor("outputs", len(r.Outputs))
				r.Outputs = append(r.Outputs, t)
				return err
			})
		default:
			err = s.skip()
		}
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, wrapScan("response body", err)
	}
	if modelErr != "" {
		return nil, fmt.Errorf("model error: %s", modelErr)
	}
	return r, nil
}

// wrapScan marks syntax errors invalid; tensor errors already are.
func wrapScan(what string, err error) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return invalidf("%s: %v", what, err)
}

func (s *scanner) params() ([]Param, error) {
	var ps []Param
	err := s.object(func(key string) error {
		var v any
		switch c := s.peek(); {
		case c == '"':
			str, err := s.str()
			if err != nil {
				return err
			}
			v = str
		case c == 't' || c == 'f':
			v = s.literal("true")
			if !v.(bool) && !s.literal("false") {
				return s.errorf("invalid literal")
			}
		case c == '{' || c == '[' || c == 'n':
			return s.skip()
		default:
			num, err := s.number()
			if err != nil {
				return err
			}
			f, err := strconv.ParseFloat(string(num), 64)
			if err != nil {
				return s.errorf("parameter %q: %v", key, err)
			}
			v = f
		}
		for i := range ps {
			if ps[i].Key == key {
				ps[i].Value = v
				return nil
			}
		}
		ps = append(ps, Param{Key: key, Value: v})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Sorted by key, as the first decoder did from its map.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Key < ps[j-1].Key; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	return ps, nil
}

// tensor decodes one tensor object. Its data is decoded after the whole
// object, since "datatype" and "shape" may follow it.
func (s *scanner) tensor(list string, index int) (Tensor, error) {
	var t Tensor
	var data []byte
	var hasShape bool
	err := s.object(func(key string) error {
		var err error
		switch key {
		case "name":
			t.Name, err = s.str()
		case "datatype":
			t.Datatype, err = s.str()
		case "shape":
			hasShape, t.Shape = true, t.Shape[:0]
			err = s.array(func() error {
				num, err := s.number()
				if err != nil {
					return err
				}
				d, err := strconv.ParseInt(string(num), 10, 64)
				if err != nil {
					return s.errorf("shape: %s is not an int64", num)
				}
				t.Shape = append(t.Shape, d)
				return nil
			})
		case "data":
			s.ws()
			start := s.pos
			if err = s.skip(); err == nil {
				data = s.data[start:s.pos]
			}
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return t, err
	}
	if t.Name == "" {
		return t, invalidf("%s[%d]: name is missing", list, index)
	}
	if !KnownDatatype(t.Datatype) {
		return t, invalidf("tensor %q: unknown datatype %q", t.Name, t.Datatype)
	}
	if !hasShape {
		return t, invalidf("tensor %q: shape is missing", t.Name)
	}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	n, err := elements(t.Name, t.Shape)
	if err != nil {
		return t, err
	}
	if len(data) == 0 || string(data) == "null" {
		return t, invalidf("tensor %q: data is missing", t.Name)
	}
	// Every element takes at least one byte of JSON, which bounds the
	// allocation by what was received.
	if n > len(data) {
		return t, invalidf("tensor %q: shape %v needs %d elements, data holds fewer", t.Name, t.Shape, n)
	}
	ds := &scanner{data: data, checkOnly: s.checkOnly}
	if !s.checkOnly {
		if t.Datatype == "BYTES" {
			t.Bytes = make([][]byte, 0, n)
		} else {
			t.Values = make([]float64, 0, n)
		}
	}
	if err := ds.elements(&t, 0); err != nil {
		return t, err
	}
	got := t.Len()
	if s.checkOnly {
		got = ds.count
	}
	if got != n {
		return t, invalidf("tensor %q: shape %v needs %d elements, data holds %d", t.Name, t.Shape, n, got)
	}
	return t, nil
}

// elements appends the elements of a (possibly nested) data array.
func (s *scanner) elements(t *Tensor, depth int) error {
	if depth > maxDepth {
		return invalidf("tensor %q: data nested deeper than %d levels", t.Name, maxDepth)
	}
	switch c := s.peek(); {
	case c == '[':
		return s.array(func() error { return s.elements(t, depth+1) })
	case c == '"':
		if t.Datatype != "BYTES" {
			return invalidf("tensor %q: string element in %s data", t.Name, t.Datatype)
		}
		v, err := s.str()
		if err != nil {
			return invalidf("tensor %q: data: %v", t.Name, err)
		}
		s.count++
		if !s.checkOnly {
			t.Bytes = append(t.Bytes, []byte(v))
		}
		return nil
	case c == 't' || c == 'f':
		if t.Datatype != "BOOL" {
			return invalidf("tensor %q: boolean element in %s data", t.Name, t.Datatype)
		}
		v := 0.0
		switch {
		case s.literal("true"):
			v = 1
		case s.literal("false"):
		default:
			return invalidf("tensor %q: data: invalid literal", t.Name)
		}
		s.count++
		if !s.checkOnly {
			t.Values = append(t.Values, v)
		}
		return nil
	case c == 'n':
		return invalidf("tensor %q: null element", t.Name)
	case c == '{':
		return invalidf("tensor %q: object element in data", t.Name)
	}
	if t.Datatype == "BOOL" || t.Datatype == "BYTES" {
		return invalidf("tensor %q: number element in %s data", t.Name, t.Datatype)
	}
	num, err := s.number()
	if err != nil {
		return invalidf("tensor %q: data: %v", t.Name, err)
	}
	s.count++
	if s.checkOnly && plainNumber(num, t.Datatype) {
		return nil
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return invalidf("tensor %q: element %s: %v", t.Name, num, err)
	}
	switch t.Datatype {
	case "FP32":
		// The value the sender's float32 printed as, not its nearest
		// float64.
		f = float64(float32(f))
	case "FP16", "BF16", "FP64":
	default:
		if f != math.Trunc(f) {
			return invalidf("tensor %q: element %s is not an integer for %s", t.Name, num, t.Datatype)
		}
	}
	if !s.checkOnly {
		t.Values = append(t.Values, f)
	}
	return nil
}

// plainNumber reports whether a valid JSON number is certainly acceptable
// for the datatype without converting it: few enough digits that it cannot
// overflow, and no fraction or exponent for an integer type.
func plainNumber(num []byte, dt string) bool {
	if len(num) > 15 {
		return false
	}
	for _, c := range num {
		if c == 'e' || c == 'E' || (c == '.' && !isFloatType(dt)) {
			return false
		}
	}
	return true
}

func isFloatType(dt string) bool {
	return dt == "FP32" || dt == "FP64" || dt == "FP16" || dt == "BF16"
}
