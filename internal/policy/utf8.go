package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// InvalidUTF8Error says where a document stops being UTF-8. JSON and YAML
// are UTF-8 (RFC 8259, YAML 1.2), and readers disagree about what else
// means: encoding/json turns a stray byte into U+FFFD, YAML refuses it. An
// object two readers see differently is bad input, never judged.
type InvalidUTF8Error struct {
	// Offset is the position of the first byte that is not UTF-8, from 0.
	Offset int
	// Line and Column (in bytes) locate it for people, both from 1.
	Line, Column int
	// Byte is that byte.
	Byte byte
	// Where names the place in a JSON document, for example
	// `a key in metadata.labels` or `the value of spec.containers[0].name`;
	// empty when the document is not JSON.
	Where string
}

func (e *InvalidUTF8Error) Error() string {
	msg := fmt.Sprintf("not valid UTF-8: byte 0x%02x at line %d, column %d (offset %d)", e.Byte, e.Line, e.Column, e.Offset)
	if e.Where != "" {
		msg += ", in " + e.Where
	}
	return msg
}

// CheckUTF8 returns an *InvalidUTF8Error when data is not valid UTF-8. The
// check is one linear pass over the bytes; locating the problem costs more,
// but only for bad input.
func CheckUTF8(data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	off := 0
	for off < len(data) {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		off += size
	}
	return &InvalidUTF8Error{
		Offset: off,
		Line:   1 + bytes.Count(data[:off], []byte{'\n'}),
		Column: off - bytes.LastIndexByte(data[:off], '\n'),
		Byte:   data[off],
		Where:  jsonPlaceAt(data, off),
	}
}

// jsonPlaceAt names the token of the JSON document js that holds byte
// offset off: a key of an object or a value at a path. It returns "" when js
// is not JSON up to there.
func jsonPlaceAt(js []byte, off int) string {
	type frame struct {
		array   bool
		key     string // of the member being read, in an object
		index   int    // of the element being read, in an array
		wantKey bool
	}
	var stack []*frame
	// path names the frames' current members; the top frame's only when
	// withTop.
	path := func(withTop bool) string {
		var b strings.Builder
		for i, f := range stack {
			if i == len(stack)-1 && !withTop {
				break
			}
			if f.array {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	// done moves the top frame past the member just read.
	done := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.array {
			f.index++
		} else {
			f.wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		s, isString := tok.(string)
		isKey := isString && top != nil && !top.array && top.wantKey
		if dec.InputOffset() > int64(off) {
			switch {
			case isKey && len(stack) == 1:
				return "a key of the top-level object"
			case isKey:
				return "a key in " + path(false)
			case top == nil:
				return "the document"
			}
			return "the value of " + path(true)
		}
		switch {
		case tok == json.Delim('{') || tok == json.Delim('['):
			stack = append(stack, &frame{array: tok == json.Delim('['), wantKey: true})
		case tok == json.Delim('}') || tok == json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
		case isKey:
			top.key, top.wantKey = s, false
		default:
			done()
		}
	}
}
