// Package pipeline is gopruner's application layer: one prune run, from an
// opened model to the files a user reads. L2Norm and my_pruning are two
// implementations of one Algorithm contract; both return an Outcome, and
// the model, plan.json, summary.json, the report and the exp_save text
// summary are written from it in one place.
//
//	config ─▶ Run ─▶ Engine.Open ─▶ Algorithm.Prune ─▶ Outcome ─▶ outputs
//	                  (IR, groups)   (score, cut,        (model, plan,
//	                                  fine-tune, eval)    summary, report)
//
// The package is pure Go: every tensor operation goes through
// engine.Engine, so the whole flow is tested with the fake engine.
package pipeline
