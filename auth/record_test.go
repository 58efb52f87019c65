package auth

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzCustomerRecord decodes a record as RedisStore does and checks that
// Validate either names a field (wrapping ErrInvalidCustomer) or yields a
// customer that keeps the invariants.
func FuzzCustomerRecord(f *testing.F) {
	for _, s := range []string{
		`{"user":"alice","password":"pw","pools":["resi","DC"],"allow_ips":["10.0.0.0/8","::ffff:1.2.3.4"]}`,
		`{"user":"a","password_hash":"$2a$04$abc","pools":["p"]}`,
		`{"user":"a-b","password":"x","pools":[]}`,
		`{"user":"a","password":"x","pools":["p"],"default_pool":"q","rate_per_sec":-1,"quota_bytes":-5}`,
		`{"user":"a","password":"x","pools":["p","P"],"expires":"2027-01-31"}`,
		`{"user":"a","password":"x","pools":["p"],"rate_per_sec":1e308,"rate_burst":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r CustomerRecord
		if json.Unmarshal(data, &r) != nil {
			return
		}
		c, err := r.Customer()
		if err != nil {
			var fe *FieldError
			if !errors.Is(err, ErrInvalidCustomer) || !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			return
		}
		if !validUser(c.User) || len(c.Pools) == 0 || !c.AllowsPool(c.DefaultPool) || c.MaxConns < 0 ||
			c.RatePerSec < 0 || c.RateBurst < 0 || c.QuotaBytes < 0 || c.burst() < 1 {
			t.Fatalf("accepted an invalid customer: %+v", c)
		}
		if err := r.Validate(func(string) bool { return true }); err != nil {
			t.Fatalf("Customer ok but Validate = %v", err)
		}
	})
}

// The customer file's entries have exactly the fields of CustomerRecord,
// under the same names: the record is the format's definition.
func TestFileEntriesAreCustomerRecords(t *testing.T) {
	t.Parallel()
	keys := func(v any) []string {
		var out []string
		for f := range reflect.TypeOf(v).Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			out = append(out, name)
		}
		slices.Sort(out)
		return out
	}
	if rec, file := keys(CustomerRecord{}), keys(fileCustomer{}); !slices.Equal(rec, file) {
		t.Errorf("CustomerRecord keys %v, customer file keys %v", rec, file)
	}
}
