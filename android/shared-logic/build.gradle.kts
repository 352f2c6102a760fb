// The sample apps' logic without UI (view-model logic, latency profiler,
// benchmark runner, CSV export): plain Kotlin over the SDK's facade, also
// compiled and tested on the JVM by scripts/test-bindings.sh (kotlin-app).
plugins {
    alias(libs.plugins.android.library)
}

android {
    namespace = "ai.tah.app"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        minSdk = libs.versions.minSdk.get().toInt()
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

dependencies {
    api(project(":tah"))
}
