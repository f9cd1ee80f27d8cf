//go:build race

package data

// raceEnabled lets tests skip work that the race detector makes slow without
// adding coverage.
const raceEnabled = true
