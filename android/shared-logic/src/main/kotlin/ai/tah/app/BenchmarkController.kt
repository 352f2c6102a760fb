package ai.tah.app

import ai.tah.sdk.TahException
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.flow.updateAndGet
import kotlinx.coroutines.launch

/** The benchmark screen's state. */
data class BenchmarkState(
    val plan: BenchmarkPlan = BenchmarkPlan(),
    val running: Boolean = false,
    val rows: List<BenchmarkRow> = emptyList(),
    /** Why the last run stopped early, if it did. */
    val message: String? = null,
) {
    val progress: Float get() = if (plan.measuredRuns == 0) 0f else rows.size.toFloat() / plan.measuredRuns
}

/** The benchmark screen's logic: runs a [BenchmarkPlan] on the model of [models] in [scope]. */
class BenchmarkController(private val scope: CoroutineScope, private val models: ModelHolder) {
    private val _state = MutableStateFlow(BenchmarkState())
    val state: StateFlow<BenchmarkState> = _state.asStateFlow()

    @Volatile
    private var job: Job? = null

    fun updatePlan(transform: (BenchmarkPlan) -> BenchmarkPlan) {
        _state.update { if (it.running) it else it.copy(plan = transform(it.plan)) }
    }

    /** Runs the plan from scratch. False, doing nothing, without a model or while a run goes on. */
    fun start(): Boolean {
        val model = models.model ?: return false
        var accepted = false
        val plan = _state.updateAndGet { s ->
            accepted = !s.running
            if (accepted) s.copy(running = true, rows = emptyList(), message = null) else s
        }.plan
        if (!accepted) return false
        job = scope.launch {
            try {
                BenchmarkRunner(model).run(plan) { row -> _state.update { it.copy(rows = it.rows + row) } }
                finish(null)
            } catch (e: TahException) {
                finish(e.describe())
            } catch (e: CancellationException) {
                finish("Stopped")
                throw e
            }
        }
        return true
    }

    private fun finish(message: String?) {
        _state.update { it.copy(running = false, message = message) }
    }

    /** Stops the run; the rows measured so far stay. */
    fun cancel() {
        job?.cancel()
    }

    /** Stops the run and waits until it has let go of the model. */
    suspend fun cancelAndJoin() {
        job?.let {
            it.cancel()
            it.join()
        }
    }

    /** The rows so far as CSV. */
    fun csv(device: String): String =
        BenchmarkCsv.render(_state.value.rows, device, (models.state.value as? ModelState.Ready)?.name ?: "")
}
