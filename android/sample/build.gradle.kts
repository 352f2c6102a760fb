// The Jetpack Compose sample app: chat with streaming, depth-tinted tokens,
// latency panel, benchmark screen with CSV export; ships the default model.
plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "ai.tah.sample"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        applicationId = "ai.tah.sample"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures {
        compose = true
    }

    // The default model (src/main/assets/arith-tah.gguf, a link to
    // models/arith-tah.gguf) is stored uncompressed, so the SDK maps it in
    // place through its AssetFileDescriptor instead of copying it out.
    androidResources {
        noCompress += "gguf"
    }
}

dependencies {
    implementation(project(":shared-logic"))
    implementation(platform(libs.androidx.compose.bom))
    implementation(libs.androidx.compose.ui)
    implementation(libs.androidx.compose.material3)
    implementation(libs.androidx.activity.compose)
    implementation(libs.androidx.lifecycle.viewmodel.compose)
    implementation(libs.androidx.lifecycle.runtime.compose)
    implementation(libs.kotlinx.coroutines.android)
}
