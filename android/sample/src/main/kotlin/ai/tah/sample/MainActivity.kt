package ai.tah.sample

import ai.tah.app.ThermalState
import ai.tah.sample.ui.SampleApp
import android.os.Build
import android.os.Bundle
import android.os.PowerManager
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.viewModels

class MainActivity : ComponentActivity() {
    private val viewModel: SampleViewModel by viewModels()

    /** Fewer compute threads when the phone gets hot (Android 10+). */
    private val thermalListener = PowerManager.OnThermalStatusChangedListener { status ->
        viewModel.app.onThermalState(ThermalState.fromAndroidStatus(status))
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            val power = getSystemService(PowerManager::class.java)
            viewModel.app.onThermalState(ThermalState.fromAndroidStatus(power.currentThermalStatus))
            power.addThermalStatusListener(mainExecutor, thermalListener)
        }
        setContent { SampleApp(viewModel) }
    }

    override fun onDestroy() {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            getSystemService(PowerManager::class.java).removeThermalStatusListener(thermalListener)
        }
        super.onDestroy()
    }

    override fun onStop() {
        super.onStop()
        // Leaving the app stops the answer and the benchmark; a rotation
        // (a configuration change) does not: the view model keeps streaming.
        if (!isChangingConfigurations) viewModel.app.onBackground()
    }

    /** The system asks for memory back: the SDK trims (see `AppController.onTrimMemory`). */
    override fun onTrimMemory(level: Int) {
        super.onTrimMemory(level)
        viewModel.app.onTrimMemory(level)
    }
}
