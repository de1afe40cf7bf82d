"""The search: NSGA-II / NSGA-III over per-layer policies, measured for real, costed on a target.

`run_search(config)` opens the workspace, builds the space, seeds the population,
and runs pymoo generation by generation. After each generation it checkpoints the
algorithm, records every evaluated policy and rewrites front.json, so a killed run
resumes (resume.py) without measuring anything twice.
"""
from __future__ import annotations

import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnxruntime
import pymoo

from . import __version__
from .config import SearchConfig
from .errors import QevoError
from .cost import model_cost
from . import front_recovery
from . import algorithm
from .algorithm import evolution_share, make_algorithm, set_running_time, termination_for
from .front import FLAT_SPAN, Front, HypervolumeScale, Solution, closest, non_dominated, relative_span
from .genome import SearchSpace, space_for
from .policy import FP32, LayerChoice, Policy
from .problem import Costing, QuantizationProblem
from .profiles import load_profile, uniform_policy
from .fidelity import race_rows as race_rows_for
from .measurer import Measurer, Progress
from .runners import MeasureTask, WorkspaceSpec, open_runner
from .seeding import gene_score, initial_population
from .proxy import ProbeStore, measure_proxy, probed_formats
from .runs import default_run_dir
from .sensitivity import proxy_summary
from .store import EvaluationCache, RunStore

SENSITIVITY_SHARE = 0.25   # of --time-limit, at most, for the sensitivity proxy (probes beyond it are skipped)
SEEDING_SHARE = 0.35       # of --time-limit, by which the ILP sweep stops adding budgets


@dataclass
class SearchResult:
    run_dir: Path
    front: Front
    progress: Progress
    feasible: bool
    notes: list[str] = field(default_factory=list)


class Search:
    """One search run, new or resumed; `run()` drives it to the end. Made by `Search.new` (a new run folder)
    or `Search.reopen` (a stopped run's folder, for resume.py); the constructor builds what both need and
    writes nothing."""

    def __init__(self, config: SearchConfig, callback: Callable[[Progress], Any] | None = None):
        self.config = config
        self.callback = callback
        # a display's hook: every phase change and every policy measured (the callback runs per generation)
        self.on_progress: Callable[[Progress], Any] | None = None
        self.started = time.perf_counter()
        self.process_started = time.time()   # tells a resumed run's generations from the ones before
        self.progress = Progress()
        self.spec = WorkspaceSpec.of(config)
        self.profile = load_profile(config.target)
        self.evaluator = self.spec.evaluator()
        model = self.evaluator.model
        self.space: SearchSpace = space_for(model, self.profile, config.allowed())
        if self.space.n_var == 0:
            raise QevoError("nothing to search: every layer has a single allowed choice on this target "
                            "(allow more formats with --weight-formats / --act-formats)", field="target")
        self.notes = list(self.space.notes)
        self.latency = self._latency_timer()
        self._drop_flat_latency()
        self.costing = Costing(self.space, self.profile, model.other_bytes, self.evaluator.fp32_score,
                               config.objectives, config.budgets(), self.latency)
        if self.space.tensors.genes:
            tensors = self.space.tensors
            what = {"all-tensors": "every tensor of the graph",
                    "qdq-ops": "the inputs and outputs of onnxruntime's quantized ops"}[tensors.scope]
            self.notes.append(f"{self.profile.name} quantizes {what}: its {len(tensors.names)} "
                              f"activation tensors are {len(tensors.genes)} genes of their own "
                              f"({', '.join(tensors.options[0])}; an op that only moves values keeps its input's "
                              "format); qevo inspect --target lists them")
        self._membership: dict[str, bool] = {}
        self._evaluated: list[dict[str, Any]] = []
        # the run folder, set by the factories
        self.run_dir: Path | None = None
        self.store: RunStore | None = None
        self.run_id: str | None = None
        self.resumed = False
        self.cache = EvaluationCache.for_evaluator(self.evaluator)   # the last step: nothing after it can fail

    @classmethod
    def new(cls, config: SearchConfig, callback: Callable[[Progress], Any] | None = None) -> "Search":
        """A new run: its folder (--out, or one named after the model and target) created and run.yaml written.
        A refusal or a failure before anything is measured leaves no folder behind."""
        search = cls(config, callback)
        named = Path(config.out) if config.out else None
        search.run_dir = named or default_run_dir(search.evaluator.model.name, search.profile.name)
        try:
            search.store = RunStore(search.run_dir, create=True)
        except BaseException:
            search.cache.close()
            if named is None:
                search.run_dir.rmdir()   # the name default_run_dir claimed
            raise
        search.run_id = uuid.uuid4().hex
        try:
            search.store.write_config(search._resolved_config())
        except BaseException:
            search._discard()
            raise
        return search

    @classmethod
    def reopen(cls, config: SearchConfig, run_dir: Path, callback: Callable[[Progress], Any] | None = None
               ) -> "Search":
        """The stopped run in `run_dir` (resume.py checks it belongs to these settings and inputs)."""
        search = cls(config, callback)
        search.resumed, search.run_dir = True, Path(run_dir)
        try:
            search.store = RunStore(search.run_dir, create=False)
            search.run_id = search.store.read_config().get("run_id")
        except BaseException:
            search.close()
            raise
        return search

    def _discard(self) -> None:
        """Close a new run that failed before measuring anything and remove what it wrote (only that: --out
        may name a folder holding other files)."""
        self.close()
        for name in (RunStore.RUN_FILE, RunStore.FRONT_FILE, RunStore.CHECKPOINT_FILE, RunStore.DB_FILE,
                     RunStore.SENSITIVITY_FILE,
                     RunStore.DB_FILE + "-wal", RunStore.DB_FILE + "-shm"):
            (self.run_dir / name).unlink(missing_ok=True)
        try:
            self.run_dir.rmdir()   # only when empty
        except OSError:
            pass

    def _resolved_config(self) -> dict[str, Any]:
        model = self.evaluator.model
        calib = self.evaluator.calibrator.calib
        return {"qevo_run": 1, "run_id": self.run_id, "settings": self.config.to_dict(),
                "resolved": {"model": str(model.path), "model_digest": model.digest,
                             "data": str(self.evaluator.data.path), "data_digest": self.evaluator.data.digest,
                             "calib": str(calib.path), "calib_digest": calib.digest, "metric": self.evaluator.metric.name,
                             "target": self.profile.name, "target_origin": self.profile.origin,
                             "search_space_size": self.space.size, "genes": self.space.n_var},
                "versions": {"qevo": __version__, "pymoo": pymoo.__version__, "onnxruntime": onnxruntime.__version__,
                             "onnx": onnx.__version__, "numpy": np.__version__, "python": platform.python_version()}}

    # -- references and seeds -----------------------------------------------------------------
    def _reference(self, name: str, policy: Policy, measure: Measurer) -> Solution:
        scored = measure([policy])[0]
        return Solution(dict(scored.objectives), scored.metric, policy, name=name)

    def _uniform_w8(self, activation: str = "int8") -> Policy:
        """int8 weights and `activation` where the target offers them; on a target that quantizes every
        tensor, every tensor at `activation` (or its nearest offered format)."""
        choice = LayerChoice(weight="int8", activation=activation)
        policy = uniform_policy(self.profile, self.space.layers, choice)[0]
        return self.space.with_tensors_at(policy, activation)

    def _sampling(self) -> np.ndarray:
        if self.space.size <= self.config.pop:   # small enough to measure every policy
            grids = np.meshgrid(*[np.arange(u + 1) for u in self.space.upper], indexing="ij")
            return np.stack([g.reshape(-1) for g in grids], axis=1).astype(int)
        table = self._proxy()
        self._phase("seeding", 0, 1)
        score = gene_score(self.space, table) if table else None
        axis = next((o for o in self.config.objectives if o != "metric"), "size")
        limits = {k: v for k, v in self.config.budgets().items() if k != "metric"}
        deadline = self.started + SEEDING_SHARE * self.config.time_limit if self.config.time_limit else None
        if table is not None:
            table.deadline = deadline
        population = initial_population(self.space, self.config.pop, score, self.profile, self.config.seed, axis,
                                        limits, deadline)
        if table is not None and table.estimated_ratios:
            self.notes.append(f"the time limit left {table.estimated_ratios} recovered or smoothed options of layers "
                              "uncomputed; they take the median gain of those computed")
        return population

    def _proxy(self):
        """The sensitivity proxy, its probes kept in the shared cache; within SENSITIVITY_SHARE of --time-limit."""
        config = self.config
        weights, activations = probed_formats(config.weight_formats, config.act_formats)
        tensors = self.space.tensors
        probed = [tensors.names[t] for t in tensors.genes]
        prune = self.space.prune
        if not weights and not activations and not probed and not prune.groups:
            return None
        deadline = self.started + SENSITIVITY_SHARE * config.time_limit if config.time_limit else None
        covered = [layer.name for layer, read in zip(self.space.layers, tensors.reads) if read]
        table = measure_proxy(self.evaluator, weights, activations, store=ProbeStore(self.store, self.cache),
                              deadline=deadline, tensors=probed, covered=covered,
                              tensor_formats=tensors.options[0] if tensors.names else (),
                              members={tensors.names[t]: [tensors.names[m] for m in tensors.members(t)]
                                       for t in tensors.genes},
                              scope=tensors.scope,
                              prune=[(group, options[0]) for group, options in zip(prune.groups, prune.options)],
                              progress=lambda done, total: self._phase("sensitivity", done, total))
        self.progress.probes += table.probes
        self.store.write_sensitivity(self._sensitivity_summary(table, weights, activations))
        if not table.complete:
            self.notes.append("the sensitivity proxy was cut short by the time limit; unprobed layers and tensors "
                              "use the median sensitivity of the probed ones")
        return table

    def _sensitivity_summary(self, table, weights: Sequence[str], activations: Sequence[str]) -> dict[str, Any]:
        """What the proxy found, for `qevo pareto show --layers` and the report: SQNR per layer at each format
        the run allows (and per activation tensor, on a target that quantizes every tensor); `weights` and
        `activations` are the formats it probed."""
        config, tensors = self.config, self.space.tensors
        # a side with no format probed (one allowed) has no sensitivity to show, not an infinite SQNR
        columns = [f"W:{f}" for f in config.weight_formats if f != "fp32" and weights] + \
                  [f"A:{f}" for f in config.act_formats if f != "fp32" and activations and not tensors.names]
        return proxy_summary(table, self.space.layers, columns,
                             tensors=[tensors.names[t] for t in tensors.genes],
                             tensor_formats=tensors.options[0] if tensors.names else ())

    def _tick(self, done: int, total: int) -> None:
        """A policy of the current batch was measured (the phase keeps its counts)."""
        self.progress.batch_done, self.progress.batch_total = done, total
        self._report_progress()

    def _phase(self, name: str, done: int, total: int) -> None:
        self.progress.phase, self.progress.phase_done, self.progress.phase_total = name, done, total
        self._report_progress()

    def _report_progress(self) -> None:
        """Elapsed and remaining time brought up to date, then the display's hook."""
        progress = self.progress
        progress.elapsed_s = time.perf_counter() - self.started
        if self.config.time_limit:
            progress.remaining_s = max(0.0, self.config.time_limit - progress.elapsed_s)
        if self.on_progress is not None:
            self.on_progress(progress)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, algorithm=None) -> SearchResult:
        try:
            return self._run(algorithm)
        except QevoError:
            # a new run that failed before measuring anything (an unreachable Dask scheduler, say)
            # leaves no empty run directory behind
            if algorithm is None and not self.resumed and self.store.count() == 0:
                self._discard()
            raise

    def _run(self, algorithm=None) -> SearchResult:
        config = self.config
        with open_runner(config.workers, config.dask) as runner:
            race_rows = race_rows_for(self.evaluator.data) if config.racing else None
            measure = Measurer(self.store, self.cache, self.costing, MeasureTask(self.spec), runner, self.progress,
                               race_rows, tick=self._tick)
            if config.time_limit:   # the evolution's share: what --recover-front keeps is for recovering the front
                measure.deadline = self.started + config.time_limit * evolution_share(config)
            wide = "int16" in self.space.tensors.options[0] if self.space.tensors.names else False
            self._phase("references", 0, 3 if wide else 2)
            references = [self._reference("fp32", Policy({l.name: FP32 for l in self.space.layers}), measure),
                          self._reference("uniform W8A8", self._uniform_w8(), measure)]
            if wide:   # what a fully quantized runtime is usually given first when int8 tensors lose too much
                references.append(self._reference("uniform W8A16", self._uniform_w8("int16"), measure))
            fp32_values = references[0].objectives
            self.hypervolume = HypervolumeScale(config.objectives, fp32_values, self.evaluator.fp32_score)
            if algorithm is None:
                sampling = self._sampling()
                algorithm = make_algorithm(config.algorithm, len(config.objectives), config.pop, sampling)
                problem = QuantizationProblem(self.space, self.costing)
                generations = 1 if self.space.size <= config.pop else config.generations
                algorithm.setup(problem, termination=termination_for(config, generations), seed=config.seed,
                                verbose=False)
                # --time-limit counts from the start of the command: references and sensitivity included
                set_running_time(algorithm, time.time() - (time.perf_counter() - self.started))
            algorithm.problem.measure = measure
            algorithm.problem.costing = self.costing   # a resumed run's own timer
            algorithm.problem.space = self.space       # a checkpoint may hold an earlier qevo's space
            front = self._write_front(references)
            total = algorithm.termination.terminations[0].n_max_gen if hasattr(algorithm.termination,
                                                                               "terminations") else 0
            stopped = False
            while algorithm.has_next():
                measure.generation = algorithm.n_iter or 1
                generation_started = time.perf_counter()
                self.progress.batch_done = self.progress.batch_total = 0
                self._phase("search", (algorithm.n_iter or 1) - 1, total)
                algorithm.next()
                front = self._end_generation(algorithm, references, total, time.perf_counter() - generation_started)
                if self.callback is not None and self.callback(self.progress) is False:
                    stopped = True
                    break
            if config.recovers_front and not stopped:
                measure.generation = (algorithm.n_iter or 1) + 1   # racing compares with everything evolved
                front = self._recover_front(measure, references, front)
            algorithm.problem.measure = None
        if self.latency is not None and self.latency.failures:
            first = next(iter(self.latency.failures.values()))
            self.notes.append(f"latency could not be measured for {len(self.latency.failures)} policies, which count "
                              f"as infeasible; the first: {first}")
        self.close()
        self.progress.elapsed_s = time.perf_counter() - self.started
        return SearchResult(self.run_dir, front, self.progress, feasible=front.feasible, notes=self.notes)

    def _end_generation(self, algorithm, references: list[Solution], total: int, took_s: float) -> Front:
        """After a generation: the front rewritten, the progress brought up to date, the algorithm checkpointed.
        Here rather than in a pymoo Callback: pymoo calls that before it counts the generation (n_iter), so a
        checkpoint taken there would resume one generation off, and it would be pickled with the algorithm."""
        front = self._write_front(references)
        progress = self.progress
        progress.generation = algorithm.n_iter - 1
        self._record_convergence("search", progress.generation)
        progress.elapsed_s = time.perf_counter() - self.started
        progress.phase_done = progress.generation
        by_generations = (total - progress.generation) * took_s
        by_time = (self.config.time_limit - progress.elapsed_s) if self.config.time_limit else None
        progress.remaining_s = max(0.0, min(by_generations, by_time) if by_time is not None else by_generations)
        self.store.save_checkpoint({"algorithm": algorithm, "progress": progress, "run_id": self.run_id})
        return front

    def _recover_front(self, measure: Measurer, references: list[Solution], front: Front) -> Front:
        """Measure the front's policies again with their weights recovered (front_recovery.py), until --time-limit."""
        config = self.config
        if config.time_limit:
            measure.deadline = self.started + config.time_limit
        axis = next((o for o in config.objectives if o != "metric"), "size")
        batches = front_recovery.recovery_batches(self.space, front.solutions, axis)
        total, done = sum(len(batch) for batch in batches), 0
        scored_before, cut_before = self.progress.evaluations, self.progress.estimated
        # a resume runs the recovery again from its first batch: its rows replace the stopped process's
        self.store.clear_convergence("recovery")
        for number, batch in enumerate(batches, 1):
            self._phase("recovery", done, total)
            self.progress.batch_done = self.progress.batch_total = 0
            measure(batch)
            done += len(batch)
            front = self._write_front(references)
            self._record_convergence("recovery", number)
            self._phase("recovery", done, total)
        scored, cut = self.progress.evaluations - scored_before, self.progress.estimated - cut_before
        recovered = sum(s.policy.is_recovered for s in front.solutions)
        self.notes.append(f"recovering the front: {scored} of {total} recovered policies scored"
                          f"{' before the time limit' if scored < total else ''}"
                          f"{f' ({cut} stopped after a data subset)' if cut else ''}; {recovered} of the "
                          f"{len(front.solutions)} front policies have recovered weights")
        return front

    def _record_convergence(self, phase: str, generation: int) -> None:
        progress = self.progress
        self.store.record_convergence(phase, generation, progress.front_size, progress.hypervolume,
                                      time.perf_counter() - self.started, self.process_started)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.cache.close()

    def _drop_flat_latency(self) -> None:
        """Leave a modelled latency out of the default objectives when it cannot separate policies: the
        space's two extremes and uniform W8A8 all within FLAT_SPAN of each other on this target."""
        config = self.config
        if config.objectives_given or self.latency is not None or "latency" not in config.objectives:
            return
        ends = [self.space.decode(np.zeros(self.space.n_var, dtype=int)), self.space.decode(self.space.upper),
                self._uniform_w8()]
        model = self.evaluator.model
        latencies = [model_cost(self.space.cost_layers(p), p, self.profile, model.other_bytes,
                                self.space.tensors.traffic, self.space.tensors.outputs,
                                self.space.tensors.converted).latency_s * 1e3 for p in ends]
        span = relative_span(latencies)
        if span < FLAT_SPAN:
            config.objectives = tuple(name for name in config.objectives if name != "latency")
            self.notes.append(f"latency on {self.profile.name} does not separate this model's policies (the space's "
                              f"extremes span {100 * span:.2g}%, {min(latencies):.4g} to {max(latencies):.4g} ms): "
                              "left out of the objectives; name it in --objectives to keep it")

    def _latency_timer(self):
        """The timer of a measured latency (--latency-cmd, or a profile timed on this machine), else None."""
        from .latency import measured_latency

        timer, note = measured_latency(self.config, self.profile, self.evaluator)
        if note:
            self.notes.append(note)
        return timer

    def _in_space(self, row: dict[str, Any]) -> bool:
        """References such as fp32 are stored too, but only policies of the search space make the front."""
        known = self._membership.get(row["key"])
        if known is None:
            try:
                self.space.encode(Policy.from_dict(row["policy"]), recovered=True)
                known = True
            except QevoError:
                known = False
            self._membership[row["key"]] = known
        return known

    def _write_front(self, references: list[Solution]) -> Front:
        # read only what is new since the last front: the store grows by one generation at a time
        self._evaluated += self.store.evaluations(after_id=self._evaluated[-1]["id"] if self._evaluated else 0)
        evaluated = self._evaluated
        rows = [row for row in evaluated if self._in_space(row)]
        objectives = list(self.config.objectives)
        chosen = non_dominated(rows, objectives)
        feasible = bool(chosen)
        if not feasible:
            chosen = closest(rows)
        self.progress.front_size = len(chosen) if feasible else 0
        self.progress.hypervolume = self.hypervolume(chosen) if feasible else 0.0
        evaluator = self.evaluator
        unit = evaluator.metric.display_unit(evaluator.fp32_score)
        front = Front(
            model=str(evaluator.model.path), model_digest=evaluator.model.digest, target=self.profile.name,
            metric=evaluator.metric.name, metric_label=evaluator.metric.label, metric_unit=unit,
            fp32_metric=evaluator.fp32_score, objectives=objectives,
            units={"metric": f"drop ({unit or 'metric units'})", "size": "MB", "latency": "ms", "energy": "mJ"},
            budgets=self.config.budgets(), feasible=feasible, references=references,
            solutions=[Solution.from_row(row) for row in chosen],
            hypervolume=self.progress.hypervolume, evaluated=len(evaluated))
        self.store.write_front(front.to_dict())
        return front


def run_search(config: SearchConfig, callback: Callable[[Progress], Any] | None = None) -> SearchResult:
    """Run a new search; `callback(progress)` after each generation may return False to stop."""
    return Search.new(config, callback=callback).run()


# checkpoints written before algorithm.py existed name these here
RunningTime, _by_violation_then_random = algorithm.RunningTime, algorithm._by_violation_then_random
