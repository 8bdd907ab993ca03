package oip

// AppendJSONString appends s to b as a JSON string, escaped as the
// protocol's own encoder escapes strings, for other JSON the filter writes.
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s) }
