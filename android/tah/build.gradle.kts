// The TaH SDK for Android: the uniffi-generated bindings and the Kotlin facade
// (bindings/kotlin, compiled from where they are) plus libtah_ffi.so for
// arm64-v8a and x86_64 (src/main/jniLibs, written by ../build-rust.sh).
// `gradle :tah:publishReleasePublicationToLocalRepository` writes the AAR and
// its POM to android/build/repo.
plugins {
    alias(libs.plugins.android.library)
    `maven-publish`
}

val abis = listOf("arm64-v8a", "x86_64")

android {
    namespace = "ai.tah.sdk"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        minSdk = libs.versions.minSdk.get().toInt()
        consumerProguardFiles("consumer-rules.pro")
        ndk { abiFilters += abis }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets {
        getByName("main") {
            kotlin.srcDir("../../bindings/kotlin/src/main/kotlin")
        }
    }

    publishing {
        singleVariant("release") {
            withSourcesJar()
        }
    }
}

dependencies {
    // The generated bindings call libtah_ffi.so through JNA; JNA's AAR brings
    // its own native part for every ABI.
    api(libs.jna) { artifact { type = "aar" } }
    // generateFlow / generateUpdates and the suspend `complete`.
    api(libs.kotlinx.coroutines.core)
}

// A missing libtah_ffi.so would only show at run time (UnsatisfiedLinkError).
val checkRustLibraries by tasks.registering {
    // Locals only in the action, for the configuration cache.
    val jniLibs = layout.projectDirectory.dir("src/main/jniLibs")
    val required = abis.toList()
    doLast {
        val missing = required.filterNot { jniLibs.file("$it/libtah_ffi.so").asFile.isFile }
        check(missing.isEmpty()) { "libtah_ffi.so missing for $missing: run android/build-rust.sh first" }
    }
}
tasks.named("preBuild") { dependsOn(checkRustLibraries) }

publishing {
    publications {
        register<MavenPublication>("release") {
            groupId = "ai.tah"
            artifactId = "tah-android"
            version = "0.1.0"
            afterEvaluate { from(components["release"]) }
        }
    }
    repositories {
        maven {
            name = "local"
            url = uri(rootProject.layout.buildDirectory.dir("repo"))
        }
    }
}
