"""Fine-tuning: the one recipe (`recipe.train`: data -> model -> fit -> evaluate -> save),
the run folder (`runs`), the session around a run (`session`), the run's splits
(`run_splits`), the loop and the step engines (`loop`, `step`), several processes
(`distributed`), the resource estimate (`preflight`) and the app's background job (`jobs`).

Layer 5: imports every layer below (config, system, data, labels, modeling, evaluation);
never inference or the app."""
