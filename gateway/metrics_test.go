package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// foldScrape collects the fold's series into customer → requests, and
// customer → bytes down.
func foldScrape(t *testing.T, f *customerFold, snap []CustomerActivity, topN int) (req, down map[string]float64) {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	f.collect(ch, snap, topN)
	close(ch)
	req, down = map[string]float64{}, map[string]float64{}
	for m := range ch {
		var d dto.Metric
		m.Write(&d)
		labels := map[string]string{}
		for _, l := range d.Label {
			labels[l.GetName()] = l.GetValue()
		}
		switch m.Desc() {
		case descCustRequests:
			req[labels["customer"]] = d.Counter.GetValue()
		case descCustBytes:
			if labels["direction"] == "down" {
				down[labels["customer"]] = d.Counter.GetValue()
			}
		}
	}
	return req, down
}

// The top N customers by traffic have their own series, the rest are
// "other"; as the ranking changes, no series goes down and every request
// lands in exactly one series.
func TestCustomerFold(t *testing.T) {
	f := &customerFold{last: map[string]foldCounts{}, emitted: map[string]*foldCounts{}}
	steps := []struct {
		name     string
		snap     []CustomerActivity // most traffic first, as activity.snapshot sorts
		wantReq  map[string]float64
		wantDown map[string]float64
	}{
		{"alice leads", []CustomerActivity{
			{User: "alice", Requests: 10, BytesDown: 1000},
			{User: "bob", Requests: 3, BytesDown: 10},
			{User: "carol", Requests: 1, BytesDown: 5},
		}, map[string]float64{"alice": 10, "other": 4}, map[string]float64{"alice": 1000, "other": 15}},
		{"bob overtakes alice: his new traffic is his, alice's goes to other", []CustomerActivity{
			{User: "bob", Requests: 8, BytesDown: 5010},
			{User: "alice", Requests: 12, BytesDown: 1100},
			{User: "carol", Requests: 1, BytesDown: 5},
		}, map[string]float64{"bob": 5, "other": 4 + 2}, map[string]float64{"bob": 5000, "other": 15 + 100}},
	}
	var prevOther, prevTotal float64
	prev := map[string]float64{}
	for _, st := range steps {
		req, down := foldScrape(t, f, st.snap, 1)
		if len(req) != len(st.wantReq) {
			t.Errorf("%s: series %v, want %v", st.name, req, st.wantReq)
		}
		for c, v := range st.wantReq {
			if req[c] != v {
				t.Errorf("%s: requests{customer=%q} = %v, want %v (all %v)", st.name, c, req[c], v, req)
			}
		}
		for c, v := range st.wantDown {
			if down[c] != v {
				t.Errorf("%s: bytes down{customer=%q} = %v, want %v (all %v)", st.name, c, down[c], v, down)
			}
		}
		// What the series gained since the last scrape (a deleted one
		// gained nothing) is what the customers did since.
		var gained, total float64
		for c, v := range req {
			gained += v - prev[c]
		}
		for _, c := range st.snap {
			total += float64(c.Requests)
		}
		if gained != total-prevTotal {
			t.Errorf("%s: series gained %v requests, customers made %v", st.name, gained, total-prevTotal)
		}
		prev, prevTotal = req, total
		if req["other"] < prevOther {
			t.Errorf("%s: other went down from %v to %v", st.name, prevOther, req["other"])
		}
		prevOther = req["other"]
	}
}
