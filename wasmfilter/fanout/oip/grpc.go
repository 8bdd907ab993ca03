package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of grpc_predict_v2.proto.
const (
	// ModelInferRequest and ModelInferResponse.
	fieldModelName    = 1
	fieldModelVersion = 2
	fieldID           = 3
	fieldParameters   = 4
	fieldInputs       = 5 // request inputs; response outputs share 5
	fieldRawInputs    = 7 // request raw_input_contents
	fieldRawOutputs   = 6 // response raw_output_contents

	// InferInputTensor / InferOutputTensor.
	fieldTensorName     = 1
	fieldTensorDatatype = 2
	fieldTensorShape    = 3
	fieldTensorContents = 5

	// InferParameter oneof.
	fieldParamBool   = 1
	fieldParamInt64  = 2
	fieldParamString = 3
	fieldParamDouble = 4
	fieldParamUint64 = 5
)

// InferTensorContents fields, one per element type.
const (
	contentsBool   = 1
	contentsInt    = 2
	contentsInt64  = 3
	contentsUint   = 4
	contentsUint64 = 5
	contentsFP32   = 6
	contentsFP64   = 7
	contentsBytes  = 8
)

// contentsField is the InferTensorContents field a datatype's elements go
// in; 0 when only raw contents can carry it.
func contentsField(dt string) protowire.Number {
	switch dt {
	case "BOOL":
		return contentsBool
	case "INT8", "INT16", "INT32":
		return contentsInt
	case "INT64":
		return contentsInt64
	case "UINT8", "UINT16", "UINT32":
		return contentsUint
	case "UINT64":
		return contentsUint64
	case "FP32":
		return contentsFP32
	case "FP64":
		return contentsFP64
	case "BYTES":
		return contentsBytes
	}
	return 0
}

// sized returns a slice with room for the fields numbered num in fs, nil
// when there is none (a repeated field never seen stays nil, as when it
// is appended to from nothing).
func sized[T any](fs []field, num protowire.Number) []T {
	n := count(fs, num)
	if n == 0 {
		return nil
	}
	return make([]T, 0, n)
}

// count is how many of the fields in fs are numbered num.
func count(fs []field, num protowire.Number) int {
	n := 0
	for _, f := range fs {
		if f.num == num {
			n++
		}
	}
	return n
}

// shapeRoom is how many dimensions a message's only tensor keeps in the
// message's own allocation.
const shapeRoom = 4

// requestWithOne is a request with room for its only input and that
// input's shape, in one allocation: the usual request has one input, and
// each allocation is slow inside wasm.
type requestWithOne struct {
	r     Request
	in    [1]Tensor
	shape [shapeRoom]int64
}

// responseWithOne is requestWithOne for a response and its only output.
type responseWithOne struct {
	r     Response
	out   [1]Tensor
	shape [shapeRoom]int64
}

// fieldBuf is how many fields a decoder keeps on its stack; the messages
// here have a handful.
const fieldBuf = 16

// field is one decoded protobuf field.
type field struct {
	num protowire.Number
	typ protowire.Type
	// v is the varint or fixed value; b the bytes of a length-delimited one.
	v uint64
	b []byte
}

// where names the part of a message an error is about. It is formatted
// only when an error is reported: a name built with fmt.Sprintf for every
// tensor cost more in wasm than decoding the tensor.
type where struct {
	name  string
	index int  // shown as name[index] when not negative
	quote bool // name is a tensor's: shown as tensor "name" contents
}

func at(name string) where { return where{name: name, index: -1} }

func (w where) String() string {
	switch {
	case w.quote:
		return "tensor " + strconv.Quote(w.name) + " contents"
	case w.index >= 0:
		return w.name + "[" + strconv.Itoa(w.index) + "]"
	}
	return w.name
}

// fields splits a message into its fields, checking the wire format, and
// appends them to dst. Callers pass a small array of their own as dst:
// the list only lives while the caller walks it, so it stays on the stack
// unless a message has more fields than the array holds.
func fields(dst []field, b []byte, what where) ([]field, error) {
	fs := dst
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, invalidf("%s: %v", what, protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, invalidf("%s: field %d: %v", what, num, protowire.ParseError(n))
		}
		b = b[n:]
		fs = append(fs, f)
	}
	return fs, nil
}

func wantBytes(f field, what where) ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, invalidf("%s: field %d has wire type %d, want length-delimited", what, f.num, f.typ)
	}
	return f.b, nil
}

// ParseGRPCRequest decodes and checks a ModelInferRequest message (the
// protobuf bytes, without gRPC framing).
//
// # Errors
//
// ErrInvalid, naming the field or input that is wrong.
func ParseGRPCRequest(msg []byte) (*Request, error) { return parseGRPCRequest(msg, false) }

// ParseGRPCRequestInPlace is ParseGRPCRequest with the request's strings
// (model, version, id, input names) pointing into msg rather than copied
// from it, one allocation fewer each: for a msg nothing writes again.
func ParseGRPCRequestInPlace(msg []byte) (*Request, error) { return parseGRPCRequest(msg, true) }

// text is b as a string: pointing into b with inPlace, else a copy.
func text(b []byte, inPlace bool) string {
	if inPlace && len(b) > 0 {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

func parseGRPCRequest(msg []byte, inPlace bool) (*Request, error) {
	var buf [fieldBuf]field
	fs, err := fields(buf[:0], msg, at("ModelInferRequest"))
	if err != nil {
		return nil, err
	}
	var r *Request
	var room []int64 // the only input's shape's
	if count(fs, fieldInputs) == 1 {
		one := &requestWithOne{}
		r, room = &one.r, one.shape[:0]
		r.Inputs = one.in[:0]
	} else {
		r = &Request{Inputs: sized[Tensor](fs, fieldInputs)}
	}
	raw := sized[[]byte](fs, fieldRawInputs)
	for _, f := range fs {
		switch f.num {
		case fieldModelName, fieldModelVersion, fieldID:
			b, err := wantBytes(f, at("ModelInferRequest"))
			if err != nil {
				return nil, err
			}
			switch f.num {
			case fieldModelName:
				r.ModelName = text(b, inPlace)
			case fieldModelVersion:
				r.ModelVersion = text(b, inPlace)
			default:
				r.ID = text(b, inPlace)
			}
		case fieldInputs:
			b, err := wantBytes(f, at("ModelInferRequest"))
			if err != nil {
				return nil, err
			}
			t, err := decodeTensorHeader(b, where{name: "inputs", index: len(r.Inputs)}, room, inPlace)
			if err != nil {
				return nil, err
			}
			r.Inputs = append(r.Inputs, t)
		case fieldRawInputs:
			b, err := wantBytes(f, at("ModelInferRequest"))
			if err != nil {
				return nil, err
			}
			raw = append(raw, b)
		}
	}
	if r.ModelName == "" {
		return nil, invalidf("ModelInferRequest: model_name is missing")
	}
	if len(r.Inputs) == 0 {
		return nil, invalidf("ModelInferRequest: no inputs")
	}
	if err := fillContents(r.Inputs, raw, "raw_input_contents"); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeGRPCResponse decodes a ModelInferResponse message.
func DecodeGRPCResponse(msg []byte) (*Response, error) { return decodeGRPCResponse(msg, false, false) }

// DecodeGRPCOutputs is DecodeGRPCResponse for a caller that reads only the
// outputs: the message is checked as DecodeGRPCResponse checks it, but the
// model name, version, id and parameters are left out of the Response,
// which spares a string (and a boxed value) for each.
func DecodeGRPCOutputs(msg []byte) (*Response, error) { return decodeGRPCResponse(msg, true, false) }

// DecodeGRPCOutputsInPlace is DecodeGRPCOutputs with the outputs' names
// pointing into msg rather than copied from it: for a msg nothing writes
// again.
func DecodeGRPCOutputsInPlace(msg []byte) (*Response, error) {
	return decodeGRPCResponse(msg, true, true)
}

func decodeGRPCResponse(msg []byte, outputsOnly, inPlace bool) (*Response, error) {
	var buf [fieldBuf]field
	fs, err := fields(buf[:0], msg, at("ModelInferResponse"))
	if err != nil {
		return nil, err
	}
	var r *Response
	var room []int64 // the only output's shape's
	if count(fs, fieldInputs) == 1 {
		one := &responseWithOne{}
		r, room = &one.r, one.shape[:0]
		r.Outputs = one.out[:0]
	} else {
		r = &Response{Outputs: sized[Tensor](fs, fieldInputs)}
	}
	if !outputsOnly {
		r.Parameters = sized[Param](fs, fieldParameters)
	}
	raw := sized[[]byte](fs, fieldRawOutputs)
	for _, f := range fs {
		switch f.num {
		case fieldModelName, fieldModelVersion, fieldID, fieldParameters, fieldInputs, fieldRawOutputs:
			b, err := wantBytes(f, at("ModelInferResponse"))
			if err != nil {
				return nil, err
			}
			if outputsOnly && f.num != fieldInputs && f.num != fieldRawOutputs {
				if f.num == fieldParameters {
					if _, err := decodeParamEntry(b, false); err != nil {
						return nil, err
					}
				}
				continue
			}
			switch f.num {
			case fieldModelName:
				r.ModelName = string(b)
			case fieldModelVersion:
				r.ModelVersion = string(b)
			case fieldID:
				r.ID = string(b)
			case fieldParameters:
				p, err := decodeParamEntry(b, true)
				if err != nil {
					return nil, err
				}
				r.Parameters = append(r.Parameters, p)
			case fieldInputs:
				t, err := decodeTensorHeader(b, where{name: "outputs", index: len(r.Outputs)}, room, inPlace)
				if err != nil {
					return nil, err
				}
				r.Outputs = append(r.Outputs, t)
			default:
				raw = append(raw, b)
			}
		}
	}
	if err := fillContents(r.Outputs, raw, "raw_output_contents"); err != nil {
		return nil, err
	}
	return r, nil
}

// knownOrString is b as a string; the protocol's datatypes (known) are
// constants, so each decoded tensor does not allocate its datatype.
func knownOrString(b []byte) string {
	if s, ok := known(b); ok {
		return s
	}
	return string(b)
}

// tensorContents gathers a tensor's typed contents field(s).
type tensorContents struct {
	present bool
	b       []byte
}

// decodeTensorHeader decodes an InferInputTensor/InferOutputTensor; typed
// contents are decoded at once (raw contents come later, by position). A
// packed shape goes in room when it fits (room belongs to this tensor);
// with inPlace the name points into msg.
func decodeTensorHeader(msg []byte, w where, room []int64, inPlace bool) (Tensor, error) {
	var buf [fieldBuf]field
	fs, err := fields(buf[:0], msg, w)
	if err != nil {
		return Tensor{}, err
	}
	var t Tensor
	var contents tensorContents
	for _, f := range fs {
		switch f.num {
		case fieldTensorName, fieldTensorDatatype, fieldTensorContents:
			b, err := wantBytes(f, w)
			if err != nil {
				return t, err
			}
			switch f.num {
			case fieldTensorName:
				t.Name = text(b, inPlace)
			case fieldTensorDatatype:
				t.Datatype = knownOrString(b)
			default:
				// Usually one field: its bytes are used in place. A second
				// is appended to a copy, never into the message.
				if contents.present {
					b = append(contents.b[:len(contents.b):len(contents.b)], b...)
				}
				contents = tensorContents{present: true, b: b}
			}
		case fieldTensorShape:
			switch f.typ {
			case protowire.VarintType:
				t.Shape = append(t.Shape, int64(f.v))
			case protowire.BytesType:
				b := f.b
				if n := packedVarints(b); t.Shape == nil && n > 0 {
					if n <= cap(room) {
						t.Shape = room[:0]
					} else {
						t.Shape = make([]int64, 0, n)
					}
				}
				for len(b) > 0 {
					v, n := protowire.ConsumeVarint(b)
					if n < 0 {
						return t, invalidf("%s: shape: %v", w, protowire.ParseError(n))
					}
					t.Shape = append(t.Shape, int64(v))
					b = b[n:]
				}
			default:
				return t, invalidf("%s: shape has wire type %d", w, f.typ)
			}
		}
	}
	if t.Name == "" {
		return t, invalidf("%s: name is missing", w)
	}
	if !KnownDatatype(t.Datatype) {
		return t, invalidf("tensor %q: unknown datatype %q", t.Name, t.Datatype)
	}
	if _, err := elements(t.Name, t.Shape); err != nil {
		return t, err
	}
	if contents.present {
		if err := decodeContents(&t, contents.b); err != nil {
			return t, err
		}
		// Mark typed contents as decoded even when empty.
		if t.Values == nil && t.Bytes == nil {
			t.Values = []float64{}
		}
	}
	return t, nil
}

// packedVarints counts the varints in a packed run (the bytes ending one).
func packedVarints(b []byte) int {
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	return n
}

// fillContents decodes raw contents (by position) for tensors without
// typed contents and checks every element count against its shape.
func fillContents(ts []Tensor, raw [][]byte, what string) error {
	if len(raw) > 0 && len(raw) != len(ts) {
		return invalidf("%s: %d entries for %d tensors", what, len(raw), len(ts))
	}
	for i := range ts {
		t := &ts[i]
		typed := t.Values != nil || t.Bytes != nil
		if len(raw) > 0 {
			if typed && t.Len() > 0 {
				return invalidf("tensor %q: both typed contents and %s", t.Name, what)
			}
			t.Values, t.Bytes = nil, nil
			if err := decodeRaw(t, raw[i]); err != nil {
				return err
			}
			continue
		}
		n, _ := elements(t.Name, t.Shape)
		if t.Len() != n {
			return invalidf("tensor %q: shape %v needs %d elements, contents hold %d", t.Name, t.Shape, n, t.Len())
		}
	}
	return nil
}

// decodeContents decodes an InferTensorContents whose field must match the
// tensor's datatype.
func decodeContents(t *Tensor, msg []byte) error {
	var buf [fieldBuf]field
	fs, err := fields(buf[:0], msg, where{name: t.Name, quote: true})
	if err != nil {
		return err
	}
	n, _ := elements(t.Name, t.Shape)
	want := contentsField(t.Datatype)
	for _, f := range fs {
		if f.num < contentsBool || f.num > contentsBytes {
			continue
		}
		if f.num != want {
			return invalidf("tensor %q: contents field %d does not carry %s", t.Name, f.num, t.Datatype)
		}
		if want == contentsBytes {
			if f.typ != protowire.BytesType {
				return invalidf("tensor %q: bytes_contents has wire type %d", t.Name, f.typ)
			}
			if len(t.Bytes) >= n {
				return invalidf("tensor %q: more than the %d elements of shape %v", t.Name, n, t.Shape)
			}
			t.Bytes = append(t.Bytes, f.b)
			continue
		}
		if err := appendScalars(t, f, n); err != nil {
			return err
		}
	}
	return nil
}

// appendScalars appends one scalar or a packed run of scalars, refusing
// more than n elements so a hostile message cannot make us allocate more
// than its shape allows.
func appendScalars(t *Tensor, f field, n int) error {
	fixed := f.num == contentsFP32 || f.num == contentsFP64
	wantTyp := protowire.VarintType
	if f.num == contentsFP32 {
		wantTyp = protowire.Fixed32Type
	} else if f.num == contentsFP64 {
		wantTyp = protowire.Fixed64Type
	}
	conv := func(v uint64) float64 {
		switch f.num {
		case contentsBool:
			return boolValue(v != 0)
		case contentsInt:
			return float64(int32(v))
		case contentsInt64:
			return float64(int64(v))
		case contentsUint:
			return float64(uint32(v))
		case contentsFP32:
			return float64(math.Float32frombits(uint32(v)))
		case contentsFP64:
			return math.Float64frombits(v)
		}
		return float64(v)
	}
	if f.typ == wantTyp {
		if len(t.Values) >= n {
			return invalidf("tensor %q: more than the %d elements of shape %v", t.Name, n, t.Shape)
		}
		t.Values = append(t.Values, conv(f.v))
		return nil
	}
	if f.typ != protowire.BytesType {
		return invalidf("tensor %q: contents field %d has wire type %d", t.Name, f.num, f.typ)
	}
	b := f.b
	if t.Values == nil {
		// Room for the run, bounded by the shape (a message cannot make us
		// allocate more than its shape allows) and by the bytes present.
		each := 1
		switch f.num {
		case contentsFP32:
			each = 4
		case contentsFP64:
			each = 8
		}
		t.Values = make([]float64, 0, min(n, len(b)/each))
	}
	for len(b) > 0 {
		if len(t.Values) >= n {
			return invalidf("tensor %q: more than the %d elements of shape %v", t.Name, n, t.Shape)
		}
		var v uint64
		var m int
		switch {
		case fixed && f.num == contentsFP32:
			var v32 uint32
			v32, m = protowire.ConsumeFixed32(b)
			v = uint64(v32)
		case fixed:
			v, m = protowire.ConsumeFixed64(b)
		default:
			v, m = protowire.ConsumeVarint(b)
		}
		if m < 0 {
			return invalidf("tensor %q: packed contents: %v", t.Name, protowire.ParseError(m))
		}
		t.Values = append(t.Values, conv(v))
		b = b[m:]
	}
	return nil
}

// decodeParamEntry decodes a parameters map entry; with keep false it
// only checks it and returns no Param.
func decodeParamEntry(b []byte, keep bool) (Param, error) {
	var buf [fieldBuf]field
	fs, err := fields(buf[:0], b, at("parameters entry"))
	if err != nil {
		return Param{}, err
	}
	var p Param
	for _, f := range fs {
		switch f.num {
		case 1:
			if f.typ != protowire.BytesType {
				return p, invalidf("parameters entry: key has wire type %d", f.typ)
			}
			if keep {
				p.Key = string(f.b)
			}
		case 2:
			if f.typ != protowire.BytesType {
				return p, invalidf("parameters entry: value has wire type %d", f.typ)
			}
			var vbuf [fieldBuf]field
			vs, err := fields(vbuf[:0], f.b, at("InferParameter"))
			if err != nil {
				return p, err
			}
			if !keep {
				continue
			}
			for _, v := range vs {
				switch v.num {
				case fieldParamBool:
					p.Value = v.v != 0
				case fieldParamInt64:
					p.Value = int64(v.v)
				case fieldParamString:
					p.Value = string(v.b)
				case fieldParamDouble:
					p.Value = math.Float64frombits(v.v)
				case fieldParamUint64:
					p.Value = v.v
				}
			}
		}
	}
	return p, nil
}

// RewriteGRPCRequest returns the ModelInferRequest msg asking model (and
// version; empty asks for the latest) instead, every other field copied
// byte for byte.
func RewriteGRPCRequest(msg []byte, model, version string) ([]byte, error) {
	return appendRewrite(make([]byte, 0, len(msg)+len(model)+len(version)+4), msg, model, version)
}

// RewriteFramedGRPCRequest is Frame(RewriteGRPCRequest(msg, model,
// version)) in one buffer, without copying the message into a frame.
func RewriteFramedGRPCRequest(msg []byte, model, version string) ([]byte, error) {
	return AppendRewriteGRPCRequest(make([]byte, 0, 5+len(msg)+len(model)+len(version)+4), msg, model, version, true)
}

// AppendRewriteGRPCRequest appends RewriteGRPCRequest(msg, model, version)
// to dst, in a gRPC frame when framed. A caller that hands the result to
// the host, which copies it, can keep dst for the next request: a fresh
// buffer on every fan-out is an allocation, slow inside wasm. dst must not
// overlap msg.
func AppendRewriteGRPCRequest(dst, msg []byte, model, version string, framed bool) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, 5+len(msg)+len(model)+len(version)+4)
	if framed {
		dst = append(dst, 0, 0, 0, 0, 0)
	}
	out, err := appendRewrite(dst, msg, model, version)
	if err != nil {
		return nil, err
	}
	if framed {
		binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-5))
	}
	return out, nil
}

func appendRewrite(out, msg []byte, model, version string) ([]byte, error) {
	out = protowire.AppendTag(out, fieldModelName, protowire.BytesType)
	out = protowire.AppendString(out, model)
	if version != "" {
		out = protowire.AppendTag(out, fieldModelVersion, protowire.BytesType)
		out = protowire.AppendString(out, version)
	}
	b := msg
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, invalidf("ModelInferRequest: %v", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, invalidf("ModelInferRequest: field %d: %v", num, protowire.ParseError(m))
		}
		if num != fieldModelName && num != fieldModelVersion {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, nil
}

// EncodeGRPCRequest writes a ModelInferRequest with typed contents.
func EncodeGRPCRequest(r *Request) ([]byte, error) {
	var b []byte
	b = appendString(b, fieldModelName, r.ModelName)
	b = appendString(b, fieldModelVersion, r.ModelVersion)
	b = appendString(b, fieldID, r.ID)
	return appendTensors(b, r.Inputs)
}

// EncodeGRPCResponse writes a ModelInferResponse with typed contents.
func EncodeGRPCResponse(r *Response) ([]byte, error) {
	return appendGRPCResponse(make([]byte, 0, responseSizeHint(r)), r)
}

// EncodeFramedGRPCResponse is Frame(EncodeGRPCResponse(r)) in one buffer,
// without copying the message into a frame.
func EncodeFramedGRPCResponse(r *Response) ([]byte, error) {
	return AppendFramedGRPCResponse(make([]byte, 0, 5+responseSizeHint(r)), r)
}

// AppendFramedGRPCResponse appends Frame(EncodeGRPCResponse(r)) to dst,
// which a caller that hands the result to the host (which copies it) can
// keep for the next answer.
func AppendFramedGRPCResponse(dst []byte, r *Response) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, 5+responseSizeHint(r))
	b, err := appendGRPCResponse(append(dst, 0, 0, 0, 0, 0), r)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-5))
	return b, nil
}

// responseSizeHint is about the encoded size of r, so that the encoder's
// buffer is allocated once.
func responseSizeHint(r *Response) int {
	size := 16 + len(r.ModelName) + len(r.ModelVersion) + len(r.ID)
	for _, p := range r.Parameters {
		size += 32 + len(p.Key)
		if s, ok := stringValue(p.Value); ok {
			size += len(s)
		}
	}
	for i := range r.Outputs {
		size += tensorSizeHint(&r.Outputs[i])
	}
	return size
}

// appendGRPCResponse appends the ModelInferResponse r to b. Nested
// messages are written in place, their lengths computed first: building
// each in a buffer of its own and copying it in was most of the encoder's
// allocations.
func appendGRPCResponse(b []byte, r *Response) ([]byte, error) {
	b = appendString(b, fieldModelName, r.ModelName)
	b = appendString(b, fieldModelVersion, r.ModelVersion)
	b = appendString(b, fieldID, r.ID)
	for _, p := range r.Parameters {
		// v is the InferParameter message, but for a string's bytes.
		var scalar [16]byte
		v, str := scalar[:0], ""
		switch x := p.Value.(type) {
		case bool:
			v = protowire.AppendTag(v, fieldParamBool, protowire.VarintType)
			v = protowire.AppendVarint(v, protowire.EncodeBool(x))
		case int64:
			v = protowire.AppendTag(v, fieldParamInt64, protowire.VarintType)
			v = protowire.AppendVarint(v, uint64(x))
		case float64:
			v = protowire.AppendTag(v, fieldParamDouble, protowire.Fixed64Type)
			v = protowire.AppendFixed64(v, math.Float64bits(x))
		case uint64:
			v = protowire.AppendTag(v, fieldParamUint64, protowire.VarintType)
			v = protowire.AppendVarint(v, x)
		default:
			s, ok := stringValue(p.Value)
			if !ok {
				return nil, fmt.Errorf("parameter %q: unsupported type %T", p.Key, p.Value)
			}
			v = protowire.AppendTag(v, fieldParamString, protowire.BytesType)
			v = protowire.AppendVarint(v, uint64(len(s)))
			str = s
		}
		vlen := len(v) + len(str)
		entry := sizeString(1, p.Key) + protowire.SizeTag(2) + protowire.SizeBytes(vlen)
		b = protowire.AppendTag(b, fieldParameters, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entry))
		b = appendString(b, 1, p.Key)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(vlen))
		b = append(append(b, v...), str...)
	}
	return appendTensors(b, r.Outputs)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// sizeString is the size appendString writes.
func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// appendTensors appends ts as the repeated tensor field of a request or
// response (the same field number in both).
func appendTensors(b []byte, ts []Tensor) ([]byte, error) {
	for i := range ts {
		t := &ts[i]
		l, err := layoutTensor(t)
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, fieldInputs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(l.size))
		b = appendTensor(b, t, &l)
	}
	return b, nil
}

// tensorLayout is how a tensor with typed contents is encoded: FP16 and
// BF16 have no typed field, so they go out as FP32.
type tensorLayout struct {
	datatype string
	num      protowire.Number // the contents field
	shape    int              // packed shape bytes
	packed   int              // packed values bytes
	contents int              // InferTensorContents bytes
	size     int              // the tensor message's bytes
}

func layoutTensor(t *Tensor) (tensorLayout, error) {
	l := tensorLayout{datatype: t.Datatype}
	if l.datatype == "FP16" || l.datatype == "BF16" {
		l.datatype = "FP32"
	}
	l.num = contentsField(l.datatype)
	if l.num == 0 {
		return l, fmt.Errorf("tensor %q: cannot encode datatype %q", t.Name, t.Datatype)
	}
	for _, d := range t.Shape {
		l.shape += protowire.SizeVarint(uint64(d))
	}
	switch {
	case l.num == contentsBytes:
		for _, e := range t.Bytes {
			l.contents += protowire.SizeTag(contentsBytes) + protowire.SizeBytes(len(e))
		}
	case len(t.Values) > 0:
		switch l.num {
		case contentsFP32:
			l.packed = 4 * len(t.Values)
		case contentsFP64:
			l.packed = 8 * len(t.Values)
		default:
			for _, v := range t.Values {
				l.packed += protowire.SizeVarint(varintOf(l.num, v))
			}
		}
		l.contents = protowire.SizeTag(l.num) + protowire.SizeBytes(l.packed)
	}
	l.size = sizeString(fieldTensorName, t.Name) + sizeString(fieldTensorDatatype, l.datatype)
	if len(t.Shape) > 0 {
		l.size += protowire.SizeTag(fieldTensorShape) + protowire.SizeBytes(l.shape)
	}
	l.size += protowire.SizeTag(fieldTensorContents) + protowire.SizeBytes(l.contents)
	return l, nil
}

// varintOf is value v as contents field num's varint.
func varintOf(num protowire.Number, v float64) uint64 {
	switch num {
	case contentsBool:
		return protowire.EncodeBool(v != 0)
	case contentsInt, contentsInt64:
		return uint64(int64(v))
	}
	return uint64(v)
}

// appendTensor appends tensor t's message, laid out by l.
func appendTensor(b []byte, t *Tensor, l *tensorLayout) []byte {
	b = appendString(b, fieldTensorName, t.Name)
	b = appendString(b, fieldTensorDatatype, l.datatype)
	if len(t.Shape) > 0 {
		b = protowire.AppendTag(b, fieldTensorShape, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(l.shape))
		for _, d := range t.Shape {
			b = protowire.AppendVarint(b, uint64(d))
		}
	}
	b = protowire.AppendTag(b, fieldTensorContents, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(l.contents))
	switch {
	case l.num == contentsBytes:
		for _, e := range t.Bytes {
			b = protowire.AppendTag(b, contentsBytes, protowire.BytesType)
			b = protowire.AppendBytes(b, e)
		}
	case len(t.Values) > 0:
		b = protowire.AppendTag(b, l.num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(l.packed))
		for _, v := range t.Values {
			switch l.num {
			case contentsFP32:
				b = protowire.AppendFixed32(b, math.Float32bits(float32(v)))
			case contentsFP64:
				b = protowire.AppendFixed64(b, math.Float64bits(v))
			default:
				b = protowire.AppendVarint(b, varintOf(l.num, v))
			}
		}
	}
	return b
}

// tensorSizeHint is about the encoded size of a tensor with typed
// contents: its names, shape, and at most 8 bytes an element.
func tensorSizeHint(t *Tensor) int {
	n := 32 + len(t.Name) + len(t.Datatype) + 10*len(t.Shape) + 8*len(t.Values)
	for _, e := range t.Bytes {
		n += 8 + len(e)
	}
	return n
}

// Frame wraps a message in gRPC's length-prefixed framing (uncompressed).
func Frame(msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// Unframe returns the single message of a unary gRPC body.
//
// # Errors
//
// ErrInvalid when the body is not exactly one complete, uncompressed
// message.
func Unframe(body []byte) ([]byte, error) {
	if len(body) < 5 {
		return nil, invalidf("grpc body of %d bytes is shorter than a frame header", len(body))
	}
	if body[0] != 0 {
		return nil, invalidf("compressed grpc messages are not supported")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) != uint64(len(body)-5) {
		return nil, invalidf("grpc frame says %d bytes, body holds %d", n, len(body)-5)
	}
	return body[5:], nil
}

// FirstModelName returns the model name (field 1, a string, of
// ModelInferRequest, ModelReadyRequest and ModelMetadataRequest alike) of
// the first message of a gRPC request body, of which body is the part
// received so far. done reports that more of the body cannot change the
// answer: the field was found, or the first message is complete, or it
// cannot be read (compressed or malformed; name is then ""). The first
// occurrence is taken: protobuf encoders write fields in number order, so
// model_name comes first and usually within the first data frame, and the
// request is held no longer than that.
func FirstModelName(body []byte) (name string, done bool) {
	if len(body) < 5 {
		return "", false
	}
	if body[0] != 0 {
		return "", true // compressed: the filter cannot read it
	}
	msg := body[5:]
	whole := false
	if n := binary.BigEndian.Uint32(body[1:5]); uint64(n) <= uint64(len(msg)) {
		msg, whole = msg[:n], true
	}
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return "", whole || len(msg) > binary.MaxVarintLen64
		}
		msg = msg[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return "", whole
			}
			return string(v), true
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return "", whole
		}
		msg = msg[n:]
	}
	return "", whole
}
