package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every ErrorList.
var ErrInvalid = errors.New("invalid policy")

// Error is one problem in the policy, located as precisely as known.
type Error struct {
	File string
	// Line and Col are 1-based; 0 when the problem is about a whole file.
	Line int
	Col  int
	// Kind and Name identify the document, when the problem is in one.
	Kind string
	Name string
	// Field is the field path inside the document, e.g.
	// "spec.split[1].weight".
	Field   string
	Message string
}

// Error formats e as "file:line:col: Kind name: field: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Kind != "" {
		fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ErrorList is every problem found, sorted by file, line and column. Load
// returns it; get it with errors.As.
type ErrorList []*Error

// Error lists the problems, one a line.
func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true for any ErrorList.
func (l ErrorList) Is(target error) bool { return target == ErrInvalid }

// Unwrap exposes the items to errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// errs collects problems while loading.
type errs struct{ list ErrorList }

func (e *errs) at(s Source, field, format string, args ...any) {
	e.list = append(e.list, &Error{File: s.File, Line: s.Line, Col: s.Col, Field: field, Message: fmt.Sprintf(format, args...)})
}

// in reports a problem at field of document d (of kind).
func (e *errs) in(kind string, d *doc, field, format string, args ...any) {
	s := d.Position(field)
	e.list = append(e.list, &Error{File: s.File, Line: s.Line, Col: s.Col, Kind: kind, Name: d.Metadata.Name,
		Field: field, Message: fmt.Sprintf(format, args...)})
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	e.list.sort()
	return e.list
}
