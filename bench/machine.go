package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// machineInfo describes where the bench ran.
type machineInfo struct {
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	Go          string `json:"go"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start: how busy
	// the machine already was.
	LoadAvg string `json:"load_avg,omitempty"`
}

func readMachine() machineInfo {
	mi := machineInfo{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	mi.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		if n, err := strconv.ParseUint(strings.TrimSuffix(kb, " kB"), 10, 64); err == nil {
			mi.MemoryBytes = n * 1024
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			mi.LoadAvg = f[0]
		}
	}
	return mi
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "" where there is none (not Linux).
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
