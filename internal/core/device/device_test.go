package device

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Device
		bad  bool
	}{
		{"cpu", CPU, false},
		{"", CPU, false},
		{"cuda", Device{CUDA: true}, false},
		{"GPU", Device{CUDA: true}, false},
		{"cuda:3", Device{CUDA: true, Index: 3}, false},
		{" 1 ", Device{CUDA: true, Index: 1}, false},
		{"cuda:x", Device{}, true},
		{"cuda:-1", Device{}, true},
		{"tpu", Device{}, true},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("Parse(%q) = %v, %v", c.in, got, err)
		}
	}
	if _, err := Parse("TPU"); err == nil || err.Error() != `device "tpu": want cpu, cuda or cuda:N` {
		t.Errorf("Parse(TPU) error = %v", err)
	}
}

func TestParseSlot(t *testing.T) {
	for in, want := range map[string]string{"cpu": "cpu", "CUDA": "cuda:0", "cuda:2": "cuda:2", "3": "cuda:3"} {
		if d, err := ParseSlot(in); err != nil || d.String() != want {
			t.Errorf("ParseSlot(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "gpu", "-1", "cuda:", "x"} {
		if _, err := ParseSlot(in); err == nil {
			t.Errorf("ParseSlot(%q) passed", in)
		}
	}
}

func TestParseName(t *testing.T) {
	for in, want := range map[string]string{"cpu": "cpu", " Cuda ": "cuda", "cuda:02": "cuda:2"} {
		if s, err := ParseName(in); err != nil || s != want {
			t.Errorf("ParseName(%q) = %q, %v; want %s", in, s, err, want)
		}
	}
	for _, in := range []string{"", "gpu", "0", "cuda:x"} {
		if _, err := ParseName(in); err == nil {
			t.Errorf("ParseName(%q) passed", in)
		}
	}
}
