package ai.tah.sample

import ai.tah.sample.ui.SampleApp
import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.viewModels

class MainActivity : ComponentActivity() {
    private val viewModel: SampleViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { SampleApp(viewModel) }
    }

    override fun onStop() {
        super.onStop()
        // Leaving the app stops the answer and the benchmark; a rotation
        // (a configuration change) does not: the view model keeps streaming.
        if (!isChangingConfigurations) viewModel.app.onBackground()
    }
}
