package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag holding a number of bytes, written as the operator
// thinks of it: 100GB (10^9), 500MiB (2^20), 1.5TB, or plain bytes.
type byteSize int64

// byteUnits are the suffixes byteSize accepts, lower-cased; a bare
// k, m, g, t or p is the decimal unit.
var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "tib": 1 << 40,
	"p": 1e15, "pb": 1e15, "pib": 1 << 50,
}

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Get() any       { return int64(*b) }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseBytes(s string) (int64, error) {
	num, unit := splitNumber(strings.TrimSpace(s))
	scale, ok := byteUnits[strings.ToLower(strings.TrimSpace(unit))]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f < 0 || math.IsNaN(f) || f*scale >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size; use bytes or a unit, e.g. 100GB, 1.5TB or 500MiB", s)
	}
	return int64(math.Round(f * scale)), nil
}

// perSecond is a flag holding a rate in requests per second, written as
// 5, 5/s, 300/m or 18000/h.
type perSecond float64

var rateUnits = map[string]float64{"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}

func (r *perSecond) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }
func (r *perSecond) Get() any       { return float64(*r) }

func (r *perSecond) Set(s string) error {
	num, per, slash := strings.Cut(strings.TrimSpace(s), "/")
	div := 1.0
	if slash {
		var ok bool
		if div, ok = rateUnits[strings.ToLower(strings.TrimSpace(per))]; !ok {
			div = 0
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || div == 0 || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%q is not a rate; use requests per second, e.g. 5, 5/s or 300/m", s)
	}
	*r = perSecond(f / div)
	return nil
}

// splitNumber splits "1.5TB" into "1.5" and "TB".
func splitNumber(s string) (num, unit string) {
	i := strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}
