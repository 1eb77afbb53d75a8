package schema

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"m/0002_b.sql": {Data: []byte("B;")},
		"m/0001_a.sql": {Data: []byte("A;")},
		"m/README":     {Data: []byte("not a migration")},
	}
	ms, err := Load(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0] != (Migration{1, "0001_a.sql", "A;"}) || ms[1] != (Migration{2, "0002_b.sql", "B;"}) {
		t.Errorf("Load = %+v", ms)
	}
}

func TestLoadRejectsGaps(t *testing.T) {
	t.Parallel()
	for name, files := range map[string][]string{
		"gap":     {"m/0001_a.sql", "m/0003_c.sql"},
		"no num":  {"m/init.sql"},
		"dup num": {"m/0001_a.sql", "m/0001_b.sql"},
		"from 2":  {"m/0002_b.sql"},
	} {
		fsys := make(fstest.MapFS)
		for _, f := range files {
			fsys[f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
		}
		if _, err := Load(fsys, "m"); err == nil {
			t.Errorf("%s: Load accepted %v", name, files)
		}
	}
}
