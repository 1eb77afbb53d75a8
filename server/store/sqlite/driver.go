package sqlite

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"

	sqlitedriver "modernc.org/sqlite"

	"github.com/hookrelay/hookrelay/server/store"
)

// newDriver returns a driver of the store's own, with the SQL functions the
// store's queries and migrations use registered on it alone (not on the
// process-wide "sqlite" driver, so nothing is global):
//
//   - hookrelay_headers_contain(headers BLOB, text TEXT): 1 when a header
//     name or value of the encoded list holds text, ignoring the case of
//     ASCII letters (text must be in lower case); else 0.
//   - hookrelay_headers_from_json(json TEXT): the header list of schema
//     version 1 (a JSON array of {"name","value"}) in store.AppendHeaders's
//     encoding, for migration 0002.
func newDriver() *sqlitedriver.Driver {
	drv := &sqlitedriver.Driver{}
	// Registering a new name on a fresh driver cannot fail.
	drv.MustRegisterFunction("hookrelay_headers_contain", &sqlitedriver.FunctionImpl{
		NArgs:         2,
		Deterministic: true,
		VolatileArgs:  true, // neither argument is kept past the call
		Scalar:        headersContain,
	})
	drv.MustRegisterFunction("hookrelay_headers_from_json", &sqlitedriver.FunctionImpl{
		NArgs:         1,
		Deterministic: true,
		Scalar:        headersFromJSON,
	})
	return drv
}

// connector opens connections to dsn with drv.
type connector struct {
	drv *sqlitedriver.Driver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

func headersContain(_ *sqlitedriver.FunctionContext, args []driver.Value) (driver.Value, error) {
	b, _ := args[0].([]byte)
	text, _ := args[1].(string)
	hs, err := store.ParseHeaders(b)
	if err != nil {
		return nil, err
	}
	if store.HeadersContain(hs, text) {
		return int64(1), nil
	}
	return int64(0), nil
}

func headersFromJSON(_ *sqlitedriver.FunctionContext, args []driver.Value) (driver.Value, error) {
	var text []byte
	switch v := args[0].(type) {
	case string:
		text = []byte(v)
	case []byte:
		text = v
	default:
		return nil, fmt.Errorf("hookrelay_headers_from_json: want text, got %T", args[0])
	}
	var hs []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	if err := json.Unmarshal(text, &hs); err != nil {
		return nil, fmt.Errorf("hookrelay_headers_from_json: %w", err)
	}
	list := make([]store.Header, len(hs))
	for i, h := range hs {
		list[i] = store.Header{Name: h.Name, Value: h.Value}
	}
	return store.AppendHeaders([]byte{}, list), nil
}
