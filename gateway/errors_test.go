package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// rfc9209Types are the error types RFC 9209 registers for Proxy-Status.
var rfc9209Types = strings.Fields(`dns_timeout dns_error destination_not_found destination_unavailable
	destination_ip_prohibited destination_ip_unroutable connection_refused connection_terminated
	connection_timeout connection_read_timeout connection_write_timeout connection_limit_reached
	tls_protocol_error tls_certificate_error tls_alert_received http_request_error http_request_denied
	http_response_incomplete http_response_header_section_size http_response_header_size
	http_response_body_size http_response_trailer_section_size http_response_trailer_size
	http_response_transfer_coding http_response_content_coding http_response_timeout http_upgrade_failed
	http_protocol_error proxy_internal_response proxy_internal_error proxy_configuration_error
	proxy_loop_detected`)

// Every row of the table is written the same way: its status, its reason
// in X-Farmgate-Error, a registered Proxy-Status error type, its message,
// and a SOCKS5 code that is not success.
func TestEveryRefusalIsWrittenFromTheTable(t *testing.T) {
	t.Parallel()
	for reason, row := range refusals {
		t.Run(reason, func(t *testing.T) {
			r := refuse(reason)
			var buf bytes.Buffer
			if err := r.write(&buf, true); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(&buf), nil)
			if err != nil {
				t.Fatalf("written reply does not parse: %v\n%s", err, buf.String())
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != row.status || resp.Header.Get("X-Farmgate-Error") != reason {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Farmgate-Error"), row.status, reason)
			}
			ps := resp.Header.Get("Proxy-Status")
			if !strings.HasPrefix(ps, "farmgate; error="+row.proxyStatus+";") || !strings.Contains(ps, `details="`+reason+`"`) {
				t.Errorf("Proxy-Status %q", ps)
			}
			if !contains(rfc9209Types, row.proxyStatus) {
				t.Errorf("Proxy-Status error type %q is not one RFC 9209 registers", row.proxyStatus)
			}
			if string(body) != row.message+"\n" || row.message == "" {
				t.Errorf("body %q, want %q", body, row.message)
			}
			if row.socks == socksSucceeded {
				t.Errorf("SOCKS5 code is success")
			}
			if (resp.StatusCode == http.StatusProxyAuthRequired) != (resp.Header.Get("Proxy-Authenticate") != "") {
				t.Errorf("Proxy-Authenticate %q with status %d", resp.Header.Get("Proxy-Authenticate"), resp.StatusCode)
			}
			if !resp.Close {
				t.Errorf("a reply written closing does not say Connection: close")
			}
		})
	}
}

// The README's table of errors and the gateway's are the same list.
func TestREADMEListsEveryRefusal(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte("## Errors a customer sees"))
	if start < 0 {
		t.Fatal(`README has no "## Errors a customer sees"`)
	}
	section := readme[start:]
	if end := bytes.Index(section[3:], []byte("\n## ")); end >= 0 {
		section = section[:end+3]
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| (\\d{3}) \\| (.*?) \\|").FindAllSubmatch(section, -1) {
		for _, r := range regexp.MustCompile("`([a-z_]+)`").FindAllSubmatch(m[2], -1) {
			listed[string(r[1])] = true
			row, ok := refusals[string(r[1])]
			if !ok {
				t.Errorf("README lists %s, which the gateway never answers", r[1])
			} else if got := string(m[1]); got != strconv.Itoa(row.status) {
				t.Errorf("README says %s for %s, the gateway %d", got, r[1], row.status)
			}
		}
	}
	for reason := range refusals {
		if reason != reasonClientClosed && !listed[reason] {
			t.Errorf("README does not list %s", reason)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
