#version 330 core
// simgen's normals pass: drawn through pyrender's SEG path (single sample, no lighting) with
// this folder as the program cache's shader_dir. Outputs the surface normal in the camera
// frame (OpenGL axes here; the fragment shader turns it to OpenCV's).
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

uniform mat4 P;
uniform mat4 V;
uniform mat4 M;

out vec3 frag_normal;
out vec3 frag_position;  // camera frame (OpenGL axes)

void main()
{
    // the position exactly as pyrender's segmentation.vert computes it: the same pixels as
    // the instance and depth pass
    mat4 light_matrix = P * V;
    gl_Position = light_matrix * M * inst_m * vec4(position, 1.0);
    frag_position = vec3(V * M * inst_m * vec4(position, 1.0));
#ifdef NORMAL_LOC
    frag_normal = transpose(inverse(mat3(V * M * inst_m))) * normal;  // (non-uniform scales included)
#else
    frag_normal = vec3(0.0, 0.0, 1.0);
#endif
}
