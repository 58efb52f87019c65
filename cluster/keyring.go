package cluster

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
)

// maxKeyFile bounds the size of a key file.
const maxKeyFile = 64 << 10

// readKeyFile reads base64 AES keys, one per line, the first primary; blank
// lines and lines starting with # are skipped. Errors name the file and line
// but never a key.
func readKeyFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("KeyFile: %w", err)
	}
	defer f.Close()
	var keys [][]byte
	sc := bufio.NewScanner(&limitedReader{f: f, n: maxKeyFile})
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("KeyFile %s line %d: not base64", path, line)
		}
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("KeyFile %s line %d: %w", path, line, err)
		}
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			keys = append(keys, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("KeyFile %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("KeyFile %s: no key", path)
	}
	return keys, nil
}

type limitedReader struct {
	f *os.File
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file too large")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= n
	return n, err
}

// loadKeys returns the configured keyring, or nil without keys (Insecure).
func (c *Config) loadKeys() (*memberlist.Keyring, error) {
	keys := c.Keys
	if c.KeyFile != "" {
		var err error
		if keys, err = readKeyFile(c.KeyFile); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	kr, err := memberlist.NewKeyring(slices.Clone(keys), keys[0])
	if err != nil {
		return nil, fmt.Errorf("Keys: %w", err)
	}
	return kr, nil
}

// ReloadKeys re-reads KeyFile and makes the keyring match it without a
// restart: new keys are installed, the file's first key becomes primary, and
// keys no longer in the file are removed. Rotate in three steps, each reloaded
// on every node before the next: add the new key second; move it first;
// remove the old key. A file that does not read or parse leaves the keyring
// unchanged.
func (c *Cluster) ReloadKeys() error {
	if c.cfg.KeyFile == "" {
		return errors.New("reloading gossip keys: no KeyFile configured")
	}
	if c.keyring == nil {
		return errors.New("reloading gossip keys: gossip is not encrypted")
	}
	keys, err := readKeyFile(c.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("reloading gossip keys: %w", err)
	}
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	for _, k := range keys {
		if err := c.keyring.AddKey(k); err != nil {
			return fmt.Errorf("reloading gossip keys: %w", err)
		}
	}
	if err := c.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("reloading gossip keys: %w", err)
	}
	var drop [][]byte
	for _, k := range c.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			drop = append(drop, slices.Clone(k))
		}
	}
	for _, k := range drop {
		if err := c.keyring.RemoveKey(k); err != nil {
			return fmt.Errorf("reloading gossip keys: %w", err)
		}
	}
	c.log.Info("gossip keys reloaded", "keys", len(keys), "removed", len(drop))
	return nil
}
