package scrape

import "testing"

func TestAdapter(t *testing.T) {
	s := Snapshot{RunningAdapters: []string{"a", "both"}, WaitingAdapters: []string{"w", "both"}}
	for _, tc := range []struct {
		name string
		want AdapterState
	}{
		{"a", AdapterRunning}, {"w", AdapterWaiting}, {"both", AdapterRunning}, {"x", AdapterAbsent}, {"", AdapterAbsent},
	} {
		if got := s.Adapter(tc.name); got != tc.want {
			t.Errorf("Adapter(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	for a, want := range map[AdapterState]string{AdapterAbsent: "absent", AdapterRunning: "running", AdapterWaiting: "waiting", 7: "AdapterState(7)"} {
		if a.String() != want {
			t.Errorf("%d.String() = %q, want %q", uint8(a), a.String(), want)
		}
	}
}
