package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// DecodeJSON decodes exactly one JSON value from data into v. Unknown
// fields are errors, so a typo in a model file does not silently drop a
// coefficient, and so is anything after the value.
func DecodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return errors.New("decode: data after the JSON object")
	}
	return nil
}
