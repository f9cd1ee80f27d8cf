// Package report writes the HTML summary of a pruning run.
//
// A report is one self-contained HTML file (exp_save/<model>/report.html):
// styles, the plot SVGs and the font they use are all inline, so the file
// can be mailed, archived or opened offline without anything going missing.
// Every field of [Data] except the page skeleton is optional; sections and
// plots whose data is absent are left out rather than drawn empty.
//
// Plots are drawn with gonum.org/v1/plot into inline SVG. A small inline
// script checks after load that each plot has a non-empty bounding box and
// records the outcome in document.body.dataset.plots ("ok:N" or
// "fail:<ids>"), which lets headless-browser tests verify rendering.
package report
