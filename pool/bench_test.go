package pool_test

import (
	"fmt"
	"testing"

	"github.com/farmgate/farmgate/pool"
)

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{10, 1000, 10_000} {
		for _, pol := range []string{pool.PolicyLeastLatency, pool.PolicyRoundRobin, pool.PolicyWeighted, pool.PolicyLeastConn, pool.PolicyRandom} {
			b.Run(fmt.Sprintf("exits=%d/policy=%s", n, pol), func(b *testing.B) {
				f := newPool(b, func(c *pool.Config) {
					c.LocalDC = "eu"
					c.DefaultPolicy = pol
				}, farm(n)...)
				ctx := b.Context()
				c := pool.Criteria{Pool: "resi", Country: "DE"}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := f.p.Pick(ctx, c); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
		b.Run(fmt.Sprintf("exits=%d/sticky", n), func(b *testing.B) {
			f := newPool(b, func(c *pool.Config) { c.LocalDC = "eu" }, farm(n)...)
			ctx := b.Context()
			sessions := make([]pool.Criteria, 1024)
			for i := range sessions {
				sessions[i] = pool.Criteria{Pool: "resi", Customer: "alice", Session: fmt.Sprint("s", i)}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := f.p.Pick(ctx, sessions[i%len(sessions)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkPickSerial(b *testing.B) {
	for _, n := range []int{10, 1000, 10_000} {
		b.Run(fmt.Sprintf("exits=%d", n), func(b *testing.B) {
			f := newPool(b, func(c *pool.Config) { c.LocalDC = "eu" }, farm(n)...)
			ctx := b.Context()
			c := pool.Criteria{Pool: "resi"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.p.Pick(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSet(b *testing.B) {
	exits := farm(10_000)
	f := newPool(b, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		exits[i%len(exits)].Weight++ // a change, as a real Set brings
		f.p.Set(exits)
	}
}
