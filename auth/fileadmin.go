package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Put implements Admin: it validates r, hashes a plaintext password,
// replaces or adds the customer, writes the file and drops the user's
// cached credentials.
func (s *FileStore) Put(_ context.Context, r CustomerRecord, create bool) error {
	if err := r.Validate(nil); err != nil {
		return fmt.Errorf("customer %q: %w", clip(r.User), err)
	}
	r, err := r.normalized()
	if err != nil {
		return err
	}
	rec, err := s.buildRecord(r, "")
	if err != nil {
		return fmt.Errorf("customer %q: %w", r.User, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return fmt.Errorf("%s: not opened for writing (use OpenFile)", s.name)
	}
	old, exists := s.users[r.User]
	switch {
	case create && exists:
		return fmt.Errorf("customer %q: %w", r.User, ErrCustomerExists)
	case !create && !exists:
		return fmt.Errorf("customer %q: %w", r.User, ErrUnknownCustomer)
	}
	order := slices.Clone(s.order)
	if exists {
		order[slices.Index(order, old)] = rec
	} else {
		order = append(order, rec)
	}
	if err := s.writeLocked(order); err != nil {
		return err
	}
	s.order = order
	s.users[r.User] = rec
	if s.dummy == nil && rec.hash != nil {
		s.dummy = rec.hash
	}
	s.cache.dropUser(r.User)
	return nil
}

// Get implements Admin.
func (s *FileStore) Get(_ context.Context, user string) (CustomerRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.users[user]
	if !ok {
		return CustomerRecord{}, fmt.Errorf("customer %q: %w", clip(user), ErrUnknownCustomer)
	}
	return cloneRecord(r.rec), nil
}

// Delete implements Admin: it removes the customer, writes the file and
// drops the user's cached credentials.
func (s *FileStore) Delete(_ context.Context, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return fmt.Errorf("%s: not opened for writing (use OpenFile)", s.name)
	}
	r, ok := s.users[user]
	if !ok {
		return fmt.Errorf("customer %q: %w", clip(user), ErrUnknownCustomer)
	}
	order := slices.DeleteFunc(slices.Clone(s.order), func(x *record) bool { return x == r })
	if err := s.writeLocked(order); err != nil {
		return err
	}
	s.order = order
	delete(s.users, user)
	s.cache.dropUser(user)
	return nil
}

// List implements Admin.
func (s *FileStore) List(_ context.Context) ([]CustomerRecord, error) {
	s.mu.RLock()
	out := make([]CustomerRecord, 0, len(s.order))
	for _, r := range s.order {
		out = append(out, cloneRecord(r.rec))
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b CustomerRecord) int { return strings.Compare(a.User, b.User) })
	return out, nil
}

func cloneRecord(r CustomerRecord) CustomerRecord {
	r.Pools = slices.Clone(r.Pools)
	r.AllowIPs = slices.Clone(r.AllowIPs)
	return r
}

// writeLocked writes order to s.path atomically: a temporary file in the
// same directory, synced, then renamed over the old one. The file keeps its
// permissions (0600 for a new file).
func (s *FileStore) writeLocked(order []*record) error {
	doc := struct {
		Customers []CustomerRecord `yaml:"customers"`
	}{Customers: make([]CustomerRecord, 0, len(order))}
	for _, r := range order {
		doc.Customers = append(doc.Customers, r.rec)
	}
	data, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("%s: encoding customers: %w", s.name, err)
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(s.path); err == nil {
		mode = fi.Mode().Perm()
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("writing customers: %w", err)
	}
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("writing customers: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing customers: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("writing customers: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing customers: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing customers: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("writing customers: %w", err)
	}
	return nil
}
