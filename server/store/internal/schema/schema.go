// Package schema reads a store's embedded migrations: the history of its
// schema, one SQL file per version, named NNNN_what.sql and numbered from
// 0001 without gaps. A released file is never edited; a change is a new
// file. Each store applies them its own way (see store/sqlite and
// store/postgres).
package schema

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Migration is one schema version.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// Load reads the *.sql files of dir in fsys, in version order, and checks
// their numbering.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, name := range names { // fs.Glob returns names sorted
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_what.sql", base)
		}
		if v != len(ms)+1 {
			return nil, fmt.Errorf("migration %s: want version %d next", base, len(ms)+1)
		}
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: base, SQL: string(text)})
	}
	return ms, nil
}
